"""The prediction log's tables: predictions, shadow predictions and feedback, with UTC timestamps.

Every backend reads timestamps back timezone-aware in UTC (:class:`UTCDateTime`). The serving process's
own bookkeeping (API keys, the model each deployment serves, replica heartbeats) lives in the same
database but is not the log: :mod:`tagops.serving.state` defines those tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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
)
from sqlalchemy.engine import Engine


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


def utcnow() -> datetime:
    """Timezone-aware now."""
    return datetime.now(UTC)


def create_tables(engine: Engine) -> None:
    """Create the log's tables that do not exist yet (idempotent)."""
    metadata.create_all(engine)
