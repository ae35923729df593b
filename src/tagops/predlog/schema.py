"""The prediction log's tables: predictions, shadow predictions, feedback and its reviews, API keys.

Every backend reads timestamps back timezone-aware in UTC (:class:`UTCDateTime`). API keys are here, not
in serving, because feedback is attributed to the key that sent it and retraining weighs a label by its
key's role and revocation. The serving process's own bookkeeping (the model each deployment serves,
replica heartbeats) lives in the same database but is not the log: :mod:`tagops.serving.state` defines
those tables.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

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
    #: The API key that sent it (``api_keys.id``); a label is trusted by its key's role, not by itself.
    Column("key_id", String(32), nullable=True),
)

#: A person's decision on a label from an untrusted key (``tagops feedback accept|reject``): only an
#: accepted one can enter training. One row per feedback row; a later decision replaces it.
feedback_reviews = Table(
    "feedback_reviews",
    metadata,
    Column("feedback_id", String(32), primary_key=True),
    Column("decision", String(16), nullable=False),
    Column("reviewer", String(200), nullable=False),
    Column("reviewed_at", UTCDateTime(), nullable=False),
    Column("note", Text, nullable=True),
)

Role = Literal["client", "labeller", "admin"]
#: What a key may do, least first; each role may also do what the roles before it may. ``client``:
#: predict and send feedback, which waits for review before training may use it. ``labeller``: its
#: feedback is trusted. ``admin``: also reload the model.
ROLES: tuple[Role, ...] = ("client", "labeller", "admin")
#: Roles whose feedback enters training without a review.
TRUSTED_ROLES: frozenset[str] = frozenset({"labeller", "admin"})

#: API keys (:mod:`tagops.serving.keys` creates and checks them): the secret only as a salted digest.
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


#: Alembic's scripts for this schema (``alembic`` reads them from this folder; no alembic.ini).
MIGRATIONS = Path(__file__).parent / "migrations"
#: Engines whose database this process brought up to date: a second call costs nothing.
_current: weakref.WeakSet[Engine] = weakref.WeakSet()
_current_lock = threading.Lock()


def create_tables(engine: Engine) -> None:
    """Bring the database's schema to the newest revision (idempotent; at most once per process).

    Every table of the log and of serving's bookkeeping is created by the migrations in
    :data:`MIGRATIONS` (Alembic), which also upgrade a log made by an earlier release, or before
    migrations existed, without touching its rows. Processes starting together take turns: a file lock
    beside a SQLite database, an advisory lock on PostgreSQL.
    """
    with _current_lock:
        if engine in _current:
            return
        upgrade(engine)
        _current.add(engine)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the schema's migrations up to ``revision`` on ``engine``'s database."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _schema_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7467616) /* tagops schema */")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextlib.contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    from filelock import FileLock

    with FileLock(f"{database}.schema.lock", timeout=120, mode=0o600):
        yield


def schema_revision(engine: Engine) -> str | None:
    """The revision the database's schema is at (``None``: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()  # type: ignore[no-any-return]
