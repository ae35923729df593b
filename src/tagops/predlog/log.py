"""The prediction log of one database: :meth:`PredictionLog.from_config` is how every caller opens it.

Serving writes to it (:attr:`PredictionLog.writer`, :meth:`PredictionLog.shadow_writer`, feedback);
monitoring, the shadow report, retraining and the simulation read it (:attr:`PredictionLog.reader`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from tagops.predlog.engine import create_log_engine, database_url_for, journal_folder
from tagops.predlog.reader import LogReader
from tagops.predlog.retention import LogSize, PruneResult, RetentionPolicy, measure, prune
from tagops.predlog.schema import create_tables, feedback, shadow_predictions, utcnow
from tagops.predlog.writer import LogWriter, WriterOptions

if TYPE_CHECKING:
    from tagops.config import MonitorConfig, RetrainConfig, RolloutConfig, ServeConfig
    from tagops.settings import Settings


def retention_of(cfg: ServeConfig) -> RetentionPolicy:
    """The retention policy of a serving config's ``log_retention_*`` fields."""
    return RetentionPolicy(max_age_days=cfg.log_retention_days, max_rows=cfg.log_retention_rows)


class PredictionLog:
    """The engine of one database, the writer of its prediction table, its reader, and feedback.

    The writer's thread starts only with :meth:`LogWriter.start`: a log opened to read costs a
    connection pool and nothing else.
    """

    def __init__(
        self,
        url: str,
        *,
        engine: Engine | None = None,
        options: WriterOptions | None = None,
        on_rows: Callable[[str, int], None] | None = None,
    ) -> None:
        self.url = url
        self.engine = engine if engine is not None else create_log_engine(url)
        self.options = options or WriterOptions()
        self.writer = LogWriter(self.engine, options=self.options, on_rows=on_rows)
        self.reader = LogReader(self.engine)

    @classmethod
    def from_config(
        cls,
        cfg: ServeConfig | MonitorConfig | RetrainConfig | RolloutConfig | None,
        settings: Settings,
        *,
        on_rows: Callable[[str, int], None] | None = None,
        journal: bool | None = None,
    ) -> PredictionLog:
        """The log at ``TAGOPS_SERVE_DATABASE_URL``, else ``cfg.database_url``, else under ``TAGOPS_HOME``.

        A :class:`~tagops.config.ServeConfig` also sets the writer's queue, batching and journal (its
        ``log_*`` fields); other configs only read and get the defaults, without a journal. ``journal``
        overrides the config's ``log_journal`` (``tagops log-replay`` reads the journal whatever it says).
        """
        from tagops.config import ServeConfig

        url = database_url_for(cfg.database_url if cfg is not None else None, settings)
        options = WriterOptions()
        if isinstance(cfg, ServeConfig):
            options = WriterOptions(
                queue_rows=cfg.log_queue_rows,
                batch_rows=cfg.log_batch_rows,
                flush_interval_s=cfg.log_flush_interval_s,
                journal_max_bytes=cfg.log_journal_max_bytes,
                retention=retention_of(cfg),
            )
            journal = cfg.log_journal if journal is None else journal
        if journal:
            options = replace(options, journal_dir=journal_folder(settings, url))
        return cls(url, options=options, on_rows=on_rows)

    def prune(self, policy: RetentionPolicy) -> PruneResult:
        """Delete what ``policy`` no longer keeps (see :mod:`tagops.predlog.retention`)."""
        return prune(self.engine, policy)

    def measure(self) -> LogSize:
        """How much the log holds (see :func:`tagops.predlog.retention.measure`)."""
        return measure(self.engine)

    def shadow_writer(self) -> LogWriter:
        """A writer of the shadow model's rows: same database, options and journal folder as :attr:`writer`.

        Its queue and thread are its own, so shadow rows never take champion rows' room.
        """
        return LogWriter(self.engine, shadow_predictions, self.options)

    def create_tables(self) -> None:
        """Create the log's tables that do not exist yet (idempotent)."""
        create_tables(self.engine)

    def add_feedback(self, *, prediction_id: str, tag: str, key_id: str | None) -> str:
        """Store feedback synchronously (the caller is told it is stored); returns its id."""
        feedback_id = uuid.uuid4().hex
        with self.engine.begin() as connection:
            connection.execute(
                feedback.insert().values(
                    id=feedback_id, created_at=utcnow(), prediction_id=prediction_id, tag=tag, key_id=key_id
                )
            )
        return feedback_id

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.dispose()
