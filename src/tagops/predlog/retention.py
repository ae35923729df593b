"""Retention of the prediction log: unlabelled predictions past an age or a row count are deleted.

Every prediction is logged with its full text, so without a limit the log grows with traffic for ever.
A prediction that received feedback is training data (retraining joins the label to the prediction's
text), so it is never deleted by retention, whatever its age; its shadow answers go with it only when
it goes. Deletes run in bounded batches (short transactions, bounded ``IN`` lists) and are idempotent:
two replicas pruning the same database at once delete each row once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, delete, select
from sqlalchemy.engine import Engine

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
        if self.max_age_days is not None and self.max_age_days <= 0:
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
    if policy.max_age_days is not None:
        cutoff = (now or datetime.now(UTC)) - timedelta(days=policy.max_age_days)
        result += _delete_while(engine, _older_than(cutoff))
    if policy.max_rows is not None:
        result += _delete_while(engine, _beyond_newest(policy.max_rows))
    return result


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
