"""The prediction log: every prediction and every feedback, in any SQLAlchemy database.

SQLite under ``TAGOPS_HOME/serving/predictions.db`` by default (WAL mode, so several replicas write to it);
``database_url`` (``TAGOPS_SERVE_DATABASE_URL``) points it at PostgreSQL or any other SQLAlchemy URL.

Predictions are written by one background thread per process: a request only appends its rows to an
in-memory queue and never waits for the database. The writer inserts what arrives within
``flush_interval_s`` of a first row (up to ``batch_rows``) in one transaction, retries a failed batch,
and flushes what is queued on shutdown. With a journal folder (the serving default), each request's rows
are also appended to a local file first (:mod:`tagops.predlog.journal`): rows of a killed process, and
rows the database refused after the retries, are written later by the next writer on the machine that
finds them (at its start, then every ``recover_interval_s``). A row that cannot be written (queue full,
writer stopped, database down after retries) is counted in the metrics and logged, never dropped
silently. The same database holds the API keys and the small tables that keep
replicas on one model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    SQLAlchemyError,
    StatementError,
)
from sqlalchemy.pool import StaticPool

from tagops.errors import TagopsError
from tagops.predlog.journal import Journal

if TYPE_CHECKING:
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and read back timezone-aware on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """To UTC; a naive datetime is refused rather than guessed."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass a timezone-aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Timezone-aware UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

predictions = Table(
    "predictions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
    Column("request_id", String(64), nullable=True, index=True),
    Column("model_name", String(200), nullable=True),
    Column("model_version", Integer, nullable=True, index=True),
    Column("model_uri", String(1000), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("tag", String(100), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("abstained", Boolean, nullable=False),
    Column("probabilities", JSON, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("replica", String(100), nullable=False),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
    Column("prediction_id", String(32), nullable=False, index=True),
    Column("tag", String(100), nullable=False),
    Column("key_id", String(32), nullable=True),
)

#: The shadow model's answers to copies of live requests (never returned to a client). A table of its
#: own, so the champion's log keeps its columns, its readers (``tagops monitor``) see no shadow rows,
#: and a shadow that falls behind cannot crowd champion rows out of their queue.
shadow_predictions = Table(
    "shadow_predictions",
    metadata,
    Column("id", String(32), primary_key=True),
    #: The champion's row this is a copy of (``predictions.id``).
    Column("prediction_id", String(32), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
    Column("model_name", String(200), nullable=True),
    Column("model_version", Integer, nullable=True, index=True),
    Column("model_uri", String(1000), nullable=False),
    Column("tag", String(100), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("abstained", Boolean, nullable=False),
    Column("probabilities", JSON, nullable=False),
    #: The shadow model's time for the batch this item was scored in.
    Column("latency_ms", Float, nullable=False),
    Column("replica", String(100), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("digest", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

#: The model every replica of one deployment should serve (set by a reload, followed by the others).
model_targets = Table(
    "serving_model_targets",
    metadata,
    Column("deployment_id", String(64), primary_key=True),
    Column("model_uri", String(1000), nullable=False),
    Column("model_version", Integer, nullable=True),
    Column("updated_at", Float, nullable=False),
)

#: What each live replica serves, refreshed every ``sync_interval_s``.
replicas = Table(
    "serving_replicas",
    metadata,
    Column("replica_id", String(64), primary_key=True),
    Column("deployment_id", String(64), nullable=False, index=True),
    Column("model_uri", String(1000), nullable=False),
    Column("model_version", Integer, nullable=True),
    Column("pid", Integer, nullable=False),
    Column("hostname", String(255), nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)


class ServingEnvironment(BaseSettings):
    """Serving secrets read from the environment (prefix ``TAGOPS_SERVE_``), never from versioned YAML."""

    model_config = SettingsConfigDict(env_prefix="TAGOPS_SERVE_", frozen=True, extra="ignore")

    database_url: str | None = None


def default_database_url(settings: Settings) -> str:
    """SQLite file under ``TAGOPS_HOME/serving``."""
    return f"sqlite:///{settings.home / 'serving' / 'predictions.db'}"


def database_url_for(config_url: str | None, settings: Settings) -> str:
    """``TAGOPS_SERVE_DATABASE_URL``, else the config's ``database_url``, else SQLite under TAGOPS_HOME."""
    return ServingEnvironment().database_url or config_url or default_database_url(settings)


def journal_folder(settings: Settings, url: str) -> Path:
    """Where this machine journals rows for the database at ``url`` (one folder per database).

    Keyed by the URL, so rows journaled for one database are never replayed into another.
    """
    return settings.home / "serving" / "journal" / hashlib.sha256(url.encode()).hexdigest()[:16]


def safe_url(url: str) -> str:
    """The URL with any password masked, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is reported by create_engine; never echo it whole
        return "<invalid database URL>"


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and its folder created."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
    except ImportError as error:  # e.g. postgresql:// without psycopg2 installed
        raise TagopsError(f"{safe_url(url)}: its database driver is not installed ({error.name})") from None
    except ArgumentError as error:  # not a URL, or a dialect SQLAlchemy does not know
        raise TagopsError(f"{safe_url(url)}: {error}") from None
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
    else:  # in-memory: one shared connection, or every connection would see its own empty database
        engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


def wait_drained(work: queue.Queue[Any], deadline: float, alive: Callable[[], bool]) -> bool:
    """Wait until every item put on ``work`` was marked done; ``False`` at ``deadline`` or if its worker died.

    Shared by the background threads of the serving path (prediction log writer, shadow scorer).
    """
    with work.all_tasks_done:
        while work.unfinished_tasks:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not alive():
                return False
            work.all_tasks_done.wait(min(remaining, 0.5))
    return True


def utcnow() -> datetime:
    """Timezone-aware now."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReplicaRecord:
    """One replica's last report."""

    replica_id: str
    model_uri: str
    model_version: int | None
    pid: int
    hostname: str
    heartbeat_at: float


_STOP = object()
#: Put by :meth:`ServingStore.flush`: the writer stops waiting for more rows and writes what it has.
_FLUSH = object()


class ServingStore:
    """Prediction log, feedback, and the replica bookkeeping of one database.

    ``on_rows(outcome, count)`` is told about every row written, dropped, failed, recovered or queued
    without a journal line (``unjournaled``); the app feeds its metrics from it. ``table`` is the table
    the writer appends to (the shadow log uses a second store on the same ``engine``, with a writer and a
    queue of its own). ``journal_dir``: journal rows there before queueing them (see the module's
    docstring); ``None``: rows live only in memory until written. ``journal_max_bytes`` caps that folder:
    past it, rows are queued without being journaled.
    """

    def __init__(
        self,
        url: str,
        *,
        queue_rows: int = 100_000,
        batch_rows: int = 500,
        flush_interval_s: float = 0.2,
        retries: int = 3,
        on_rows: Callable[[str, int], None] | None = None,
        table: Table = predictions,
        engine: Engine | None = None,
        journal_dir: Path | str | None = None,
        journal_max_bytes: int | None = None,
        recover_interval_s: float = 30.0,
    ) -> None:
        self.url = url
        self.engine = engine if engine is not None else create_store_engine(url)
        self.table = table
        self.queue_rows = queue_rows
        self.batch_rows = batch_rows
        self.flush_interval_s = flush_interval_s
        self.retries = retries
        self.on_rows = on_rows
        self.journal = (
            None if journal_dir is None else Journal(journal_dir, table.name, max_bytes=journal_max_bytes)
        )
        self.recover_interval_s = recover_interval_s
        self.written_rows = 0
        self.dropped_rows = 0
        self.failed_rows = 0
        self.recovered_rows = 0
        self.unjournaled_rows = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        #: Set by flush() and stop(): the writer ends its collection window at once. Rows never set it.
        self._hurry = threading.Event()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._last_drop_log = 0.0
        self._last_journal_error = 0.0
        self._datetime_columns = [c.name for c in table.columns if isinstance(c.type, UTCDateTime)]

    # ------------------------------------------------------------------------------------ lifecycle
    def create_tables(self) -> None:
        """Create the tables that do not exist yet (idempotent)."""
        metadata.create_all(self.engine)

    def start(self) -> None:
        """Create the tables and start the writer thread (idempotent)."""
        self.create_tables()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopped = False
            name = "tagops-prediction-log" if self.table is predictions else f"tagops-log-{self.table.name}"
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    @property
    def writer_alive(self) -> bool:
        """Whether the writer thread is running."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending_rows(self) -> int:
        """Rows accepted but not yet written (or given up on)."""
        return self._queued_rows

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every accepted row is written or given up on; ``False`` on timeout.

        The writer is told to write now rather than at the end of its ``flush_interval_s`` wait.
        """
        if self.writer_alive:
            self._queue.put(_FLUSH)
            self._hurry.set()
        return wait_drained(self._queue, time.monotonic() + timeout, lambda: self.writer_alive)

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, stop the writer, and report rows that could not be written."""
        with self._lock:
            thread, self._stopped = self._thread, True
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            self._hurry.set()
            thread.join(timeout)
            if thread.is_alive():
                logger.error(
                    "prediction log: writer still busy after %.0fs; %d rows not written",
                    timeout,
                    self._queued_rows,
                )
        elif self._queued_rows:
            self._count("dropped", self._queued_rows)
            logger.error("prediction log: %d rows queued but no writer ran", self._queued_rows)
        if self.journal is not None:
            self.journal.close()  # rows still owed stay in their segments for the next writer

    def dispose(self) -> None:
        """Close the database connections."""
        self.engine.dispose()

    # ---------------------------------------------------------------------------------- predictions
    def submit(self, rows: Sequence[dict[str, Any]]) -> bool:
        """Queue prediction rows for writing; never blocks. ``False`` (counted, logged) when refused."""
        count = len(rows)
        if not count:
            return True
        with self._lock:
            refused = self._stopped or self._queued_rows + count > self.queue_rows
            if not refused:
                self._queued_rows += count
        if refused:
            self._count("dropped", count)
            self._log_drop(count)
            return False
        segment = None
        if self.journal is not None:
            try:
                segment = self.journal.append(rows)
            except Exception as error:  # never fails a prediction: still queued, only a kill would lose them
                self._count("unjournaled", count)
                now = time.monotonic()
                if now - self._last_journal_error >= 10.0:
                    self._last_journal_error = now
                    logger.error(
                        "prediction log: rows not journaled (%s); they are still queued, %d unjournaled in "
                        "total",
                        error,
                        self.unjournaled_rows,
                    )
        self._queue.put((segment, list(rows)))
        return True

    def _log_drop(self, count: int) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= 10.0:  # a full queue would otherwise log once per request
            self._last_drop_log = now
            reason = "writer stopped" if self._stopped else f"queue full ({self.queue_rows} rows)"
            logger.error(
                "prediction log: dropped %d rows (%s); %d dropped in total", count, reason, self.dropped_rows
            )

    def _count(self, outcome: str, count: int) -> None:
        if outcome == "written":
            self.written_rows += count
        elif outcome == "dropped":
            self.dropped_rows += count
        elif outcome == "recovered":
            self.recovered_rows += count
        elif outcome == "unjournaled":
            self.unjournaled_rows += count
        else:
            self.failed_rows += count
        if self.on_rows is not None:
            self.on_rows(outcome, count)

    def _run(self) -> None:
        self._recover_logged()
        next_recovery = time.monotonic() + self.recover_interval_s
        stopping = False
        while not stopping:
            if self.journal is not None:
                self.journal.refresh_size()  # the cap's view of the folder (at most once a second)
                if time.monotonic() >= next_recovery:
                    # Between batches, also under steady load: a replica that is not replaced leaves its
                    # segments to the others. Cheap when there is nothing: a listing and a failed flock each.
                    self._recover_logged()
                    next_recovery = time.monotonic() + self.recover_interval_s
            try:
                item = self._queue.get(timeout=self.flush_interval_s)
            except queue.Empty:
                continue
            items = [item]
            stopping = item is _STOP
            rows: list[dict[str, Any]] = [] if item is _STOP or item is _FLUSH else list(item[1])
            # Rows arriving within flush_interval_s of the first go into the same transaction: one
            # write per request would cost each request a commit, and the GIL it holds meanwhile
            # delays the request threads (measured: 1.8 ms of writer time per row at concurrency 1).
            # The writer sleeps through that window and then takes what queued, rather than waiting on
            # the queue: a waiting writer is woken by every put, and each wake-up takes the GIL from the
            # request path for a moment (py-spy at concurrency 1: the writer ran at every request).
            # Only flush() and stop() cut the window short, or a full batch already queued.
            if not stopping and item is not _FLUSH and self._queued_rows < self.batch_rows:
                self._hurry.wait(self.flush_interval_s)
            self._hurry.clear()
            while len(rows) < self.batch_rows and not stopping and item is not _FLUSH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                items.append(more)
                if more is _STOP:
                    stopping = True
                elif more is _FLUSH:
                    break
                else:
                    rows.extend(more[1])
            if self.journal is not None:
                self.journal.rotate()  # later rows go to a new segment; these ones can be settled
            written = False
            try:
                if rows:
                    written = self._write(rows)
            finally:
                with self._lock:
                    self._queued_rows -= len(rows)
                for item in items:
                    if self.journal is not None and item is not _STOP and item is not _FLUSH:
                        segment, batch = item
                        if segment is not None:  # None: the append failed, nothing to settle
                            self.journal.settle(segment, len(batch), failed=not written)
                    self._queue.task_done()
            if stopping and not self._queue.empty():
                stopping = False  # rows queued behind the stop marker are still written
                self._queue.put(_STOP)

    def _write(self, rows: list[dict[str, Any]]) -> bool:
        """Insert ``rows`` in one transaction, with retries; whether they were written."""
        kept = " (kept in the journal for replay)" if self.journal is not None else ""
        delay = 0.1
        for attempt in range(1, self.retries + 1):
            try:
                with self.engine.begin() as connection:
                    connection.execute(self.table.insert(), rows)
            except IntegrityError as error:  # a duplicate id cannot succeed on retry
                self._count("failed", len(rows))
                logger.error("prediction log: %d rows not written%s: %s", len(rows), kept, error.orig)
                return False
            except SQLAlchemyError as error:
                if attempt == self.retries:
                    self._count("failed", len(rows))
                    logger.error(
                        "prediction log: %d rows not written after %d attempts%s: %s",
                        len(rows),
                        attempt,
                        kept,
                        error,
                    )
                    return False
                logger.warning("prediction log: write failed (attempt %d), retrying: %s", attempt, error)
                time.sleep(delay)
                delay *= 4
            else:
                self._count("written", len(rows))
                return True
        return False

    def recover(self) -> int:
        """Write the rows of every journal segment no live writer holds; returns the rows added.

        Those are the segments of processes that died before writing them and of this process's
        writes that failed. Rows already in the table (written before the kill, or by a racing replay)
        are skipped by id, so a replay can be repeated. Stops at the first database error; the
        segment stays for the next try.
        """
        if self.journal is None:
            return 0
        added = 0
        for replay in self.journal.replayable():
            try:
                count = self._insert_missing(replay.rows)
            except (IntegrityError, DataError) as error:  # the rows themselves are wrong: never retried
                self.journal.set_aside(replay, str(error.orig))
                continue
            except DBAPIError:  # the database is unreachable or busy: the next try reads it again
                self.journal.release(replay)
                raise
            except (StatementError, KeyError, TypeError, ValueError) as error:  # a row that cannot be bound
                self.journal.set_aside(replay, f"{type(error).__name__}: {error}")
                continue
            self.journal.finish(replay)
            if count:
                logger.warning("prediction log: %d rows recovered from %s", count, replay.path.name)
                self._count("recovered", count)
            added += count
        return added

    def _recover_logged(self) -> None:
        try:
            self.recover()
        except SQLAlchemyError as error:
            logger.error("prediction log: journal replay failed, will retry: %s", error)
        except Exception:  # the writer thread must outlive any replay problem
            logger.exception("prediction log: journal replay failed, will retry")

    def _insert_missing(self, rows: list[dict[str, Any]]) -> int:
        for row in rows:
            for name in self._datetime_columns:
                if isinstance(row.get(name), str):
                    row[name] = datetime.fromisoformat(row[name])
        key = self.table.c.id
        added = 0
        for start in range(0, len(rows), 500):  # bounded IN lists: SQLite caps bound parameters
            chunk = {str(row["id"]): row for row in rows[start : start + 500]}
            with self.engine.begin() as connection:
                present = set(connection.execute(select(key).where(key.in_(list(chunk)))).scalars())
                missing = [row for row_id, row in chunk.items() if row_id not in present]
                if missing:
                    connection.execute(self.table.insert(), missing)
            added += len(missing)
        return added

    def count_predictions(self) -> int:
        """Rows in the prediction log."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(predictions)).scalar_one())

    def prediction_exists(self, prediction_id: str) -> bool:
        """Whether a prediction with this id has been written."""
        query = select(predictions.c.id).where(predictions.c.id == prediction_id)
        with self.engine.connect() as connection:
            return connection.execute(query).first() is not None

    def read_predictions(
        self,
        *,
        since: datetime,
        until: datetime,
        model_version: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Predictions made in ``[since, until)`` (read-only; oldest first), optionally of one model version.

        Each row has the columns the monitor needs: ``id``, ``created_at``, ``title``, ``description``,
        ``tag``, ``confidence``, ``abstained``, ``probabilities``, ``model_uri``, ``model_version``.
        """
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must be timezone-aware datetimes")
        c = predictions.c
        query = (
            select(
                c.id,
                c.created_at,
                c.title,
                c.description,
                c.tag,
                c.confidence,
                c.abstained,
                c.probabilities,
                c.model_uri,
                c.model_version,
            )
            .where(c.created_at >= since.astimezone(UTC), c.created_at < until.astimezone(UTC))
            .order_by(c.created_at, c.id)
        )
        if model_version is not None:
            query = query.where(c.model_version == model_version)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def read_feedback(self, prediction_ids: Sequence[str]) -> dict[str, str]:
        """The latest feedback tag of each of these predictions that received feedback (read-only)."""
        found: dict[str, str] = {}
        ids = list(prediction_ids)
        for start in range(0, len(ids), 500):  # bounded IN lists: SQLite caps bound parameters
            query = (
                select(feedback.c.prediction_id, feedback.c.tag)
                .where(feedback.c.prediction_id.in_(ids[start : start + 500]))
                .order_by(feedback.c.created_at, feedback.c.id)
            )
            with self.engine.connect() as connection:
                for prediction_id, tag in connection.execute(query):
                    found[str(prediction_id)] = str(tag)  # later rows win: the newest feedback counts
        return found

    def count_rows(self, table: Table) -> int:
        """Rows in one of the log's tables (``predictions``, ``feedback``, ``shadow_predictions``)."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())

    def read_shadow_pairs(self, *, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Champion rows of ``[since, until)`` that the shadow also answered, side by side (read-only).

        Each row: ``prediction_id``, ``created_at``, the champion's ``tag``, ``confidence``,
        ``probabilities``, ``latency_ms``, ``model_version``, and the shadow's as ``shadow_*``.
        """
        if since.tzinfo is None or until.tzinfo is None:
            raise ValueError("since and until must be timezone-aware datetimes")
        c, s = predictions.c, shadow_predictions.c
        query = (
            select(
                c.id.label("prediction_id"),
                c.created_at,
                c.model_version,
                c.tag,
                c.confidence,
                c.probabilities,
                c.latency_ms,
                s.model_version.label("shadow_model_version"),
                s.model_uri.label("shadow_model_uri"),
                s.tag.label("shadow_tag"),
                s.confidence.label("shadow_confidence"),
                s.probabilities.label("shadow_probabilities"),
                s.latency_ms.label("shadow_latency_ms"),
            )
            .join(shadow_predictions, s.prediction_id == c.id)
            .where(c.created_at >= since.astimezone(UTC), c.created_at < until.astimezone(UTC))
            .order_by(c.created_at, c.id)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def read_labelled(
        self, *, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Every feedback row with the prediction it labels (read-only, oldest feedback first).

        Each row: ``feedback_id``, ``feedback_at``, ``feedback_tag``, ``prediction_id``, ``predicted_at``,
        ``title``, ``description``, ``tag`` (what the model answered) and ``model_version``. Feedback whose
        prediction is not in the log is left out (the API refuses it; a restored backup might not).
        ``since``/``until`` bound the feedback's time.
        """
        f, c = feedback.c, predictions.c
        query = (
            select(
                f.id.label("feedback_id"),
                f.created_at.label("feedback_at"),
                f.tag.label("feedback_tag"),
                c.id.label("prediction_id"),
                c.created_at.label("predicted_at"),
                c.title,
                c.description,
                c.tag,
                c.model_version,
            )
            .join(predictions, c.id == f.prediction_id)
            .order_by(f.created_at, f.id)
        )
        if since is not None:
            query = query.where(f.created_at >= since.astimezone(UTC))
        if until is not None:
            query = query.where(f.created_at < until.astimezone(UTC))
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    # ------------------------------------------------------------------------------------- feedback
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

    # ------------------------------------------------------------------------- replica bookkeeping
    def claim_target(self, deployment_id: str, model_uri: str, version: int | None) -> tuple[str, int | None]:
        """Set the deployment's model if none is set yet; return the one in force."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    model_targets.insert().values(
                        deployment_id=deployment_id,
                        model_uri=model_uri,
                        model_version=version,
                        updated_at=time.time(),
                    )
                )
        except IntegrityError:
            pass
        target = self.get_target(deployment_id)
        return target if target is not None else (model_uri, version)

    def get_target(self, deployment_id: str) -> tuple[str, int | None] | None:
        """The model the deployment's replicas should serve, if one was set."""
        query = select(model_targets.c.model_uri, model_targets.c.model_version).where(
            model_targets.c.deployment_id == deployment_id
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else (str(row[0]), row[1])

    def set_target(self, deployment_id: str, model_uri: str, version: int | None) -> None:
        """Point every replica of the deployment at this model."""
        values = {"model_uri": model_uri, "model_version": version, "updated_at": time.time()}
        with self.engine.begin() as connection:
            updated = connection.execute(
                model_targets.update().where(model_targets.c.deployment_id == deployment_id).values(**values)
            ).rowcount
            if not updated:
                connection.execute(model_targets.insert().values(deployment_id=deployment_id, **values))

    def heartbeat(self, replica_id: str, deployment_id: str, model_uri: str, version: int | None) -> None:
        """Record that this replica is alive and which model it serves."""
        values = {
            "deployment_id": deployment_id,
            "model_uri": model_uri,
            "model_version": version,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "heartbeat_at": time.time(),
        }
        with self.engine.begin() as connection:
            updated = connection.execute(
                replicas.update().where(replicas.c.replica_id == replica_id).values(**values)
            ).rowcount
            if not updated:
                connection.execute(replicas.insert().values(replica_id=replica_id, **values))

    def live_replicas(self, deployment_id: str | None, max_age_s: float) -> list[ReplicaRecord]:
        """Replicas of the deployment (of any, for ``None``) that reported within ``max_age_s``."""
        query = select(
            replicas.c.replica_id,
            replicas.c.model_uri,
            replicas.c.model_version,
            replicas.c.pid,
            replicas.c.hostname,
            replicas.c.heartbeat_at,
        ).where(replicas.c.heartbeat_at >= time.time() - max_age_s)
        if deployment_id is not None:
            query = query.where(replicas.c.deployment_id == deployment_id)
        with self.engine.connect() as connection:
            return [ReplicaRecord(*row) for row in connection.execute(query)]

    def remove_replica(self, replica_id: str) -> None:
        """Forget a replica that shuts down cleanly."""
        with self.engine.begin() as connection:
            connection.execute(replicas.delete().where(replicas.c.replica_id == replica_id))
