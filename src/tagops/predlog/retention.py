"""Retention of the prediction log: unlabelled predictions past an age or a row count are deleted.

Every prediction is logged with its full text, so without a limit the log grows with traffic for ever.
A prediction that received feedback is training data (retraining joins the label to the prediction's
text), so it is never deleted by retention, whatever its age; its shadow answers go with it only when
it goes. Deletes run in bounded batches (short transactions, bounded ``IN`` lists) and are idempotent:
two replicas pruning the same database at once delete each row once. :func:`measure` reports how much
the log holds, so that an operator sees the stock the limits keep, not only the flow through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, delete, func, select, text
from sqlalchemy.engine import Connection, Engine

from tagops.predlog.schema import feedback, predictions, shadow_predictions

#: Rows per delete transaction (and per bound ``IN`` list: SQLite caps bound parameters).
BATCH_ROWS = 500


@dataclass(frozen=True)
class RetentionPolicy:
    """How much of the log to keep: predictions younger than ``max_age_days``, the newest ``max_rows``.

    ``None`` turns a limit off; a labelled prediction is kept past both.
    """

    max_age_days: float | None = None
    max_rows: int | None = None

    def __post_init__(self) -> None:
        if self.max_age_days is not None and not self.max_age_days > 0:  # NaN too
            raise ValueError(f"max_age_days must be positive, got {self.max_age_days}")
        if self.max_rows is not None and self.max_rows < 0:
            raise ValueError(f"max_rows must be zero or more, got {self.max_rows}")

    @property
    def active(self) -> bool:
        """Whether any limit is set."""
        return self.max_age_days is not None or self.max_rows is not None


@dataclass(frozen=True)
class PruneResult:
    """Rows one retention pass deleted."""

    predictions: int = 0
    shadow_predictions: int = 0

    def __add__(self, other: PruneResult) -> PruneResult:
        return PruneResult(
            self.predictions + other.predictions, self.shadow_predictions + other.shadow_predictions
        )


def prune(engine: Engine, policy: RetentionPolicy, *, now: datetime | None = None) -> PruneResult:
    """Delete the unlabelled predictions ``policy`` no longer keeps, with their shadow answers."""
    result = PruneResult()
    cutoff = age_cutoff(policy, now or datetime.now(UTC))
    if cutoff is not None:
        result += _delete_while(engine, _older_than(cutoff))
    if policy.max_rows is not None:
        result += _delete_while(engine, _beyond_newest(policy.max_rows))
    return result


def age_cutoff(policy: RetentionPolicy, now: datetime) -> datetime | None:
    """The oldest creation time ``policy`` keeps: ``None`` for no age limit, or one past the calendar.

    An age of a million days is a way to say "keep them all" and means that: ``datetime`` cannot hold a
    time before the year 1, and asking for one would fail the hourly pass of every server.
    """
    if policy.max_age_days is None:
        return None
    try:
        return now - timedelta(days=policy.max_age_days)
    except OverflowError:
        return None


_LABELLED = select(feedback.c.prediction_id)


def _older_than(cutoff: datetime) -> Select[tuple[str]]:
    c = predictions.c
    return select(c.id).where(c.created_at < cutoff, c.id.not_in(_LABELLED)).limit(BATCH_ROWS)


def _beyond_newest(rows: int) -> Select[tuple[str]]:
    c = predictions.c
    # Newest first; ties on the timestamp are broken by id so that every pass sees the same order.
    beyond = select(c.id).order_by(c.created_at.desc(), c.id.desc()).offset(rows).subquery()
    return select(beyond.c.id).where(beyond.c.id.not_in(_LABELLED)).limit(BATCH_ROWS)


def _delete_while(engine: Engine, query: Select[tuple[str]]) -> PruneResult:
    """Delete the predictions ``query`` selects (a batch at a time) until it selects none."""
    total = PruneResult()
    while True:
        with engine.begin() as connection:
            ids = list(connection.execute(query).scalars())
            if not ids:
                return total
            shadow = connection.execute(
                delete(shadow_predictions).where(shadow_predictions.c.prediction_id.in_(ids))
            ).rowcount
            gone = connection.execute(delete(predictions).where(predictions.c.id.in_(ids))).rowcount
        total += PruneResult(int(gone), int(shadow))


@dataclass(frozen=True)
class LogSize:
    """How much the prediction log holds.

    ``bytes`` is what the database reports: for SQLite the whole database file (its other tables, keys
    and feedback, are small beside the predictions), for PostgreSQL the two tables with their indexes and
    TOAST; ``None`` for other databases.
    """

    predictions: int
    shadow_predictions: int
    bytes: int | None


def measure(engine: Engine) -> LogSize:
    """Count the log's rows and ask the database for its size (a full count: hourly, not per request)."""
    with engine.connect() as connection:
        rows = [
            int(connection.execute(select(func.count()).select_from(table)).scalar_one())
            for table in (predictions, shadow_predictions)
        ]
        return LogSize(rows[0], rows[1], _database_bytes(connection))


def _database_bytes(connection: Connection) -> int | None:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
        page_size = connection.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int(pages) * int(page_size)
    if dialect == "postgresql":
        query = text("SELECT pg_total_relation_size(:a) + pg_total_relation_size(:b)")
        names = {"a": predictions.name, "b": shadow_predictions.name}
        return int(connection.execute(query, names).scalar_one())
    return None
