"""Where the prediction log lives: the database URL, its engine, and this host's journal folder.

SQLite under ``TAGOPS_HOME/serving/predictions.db`` by default (WAL mode, so several replicas write to it);
``database_url`` (``TAGOPS_SERVE_DATABASE_URL``) points it at PostgreSQL or any other SQLAlchemy URL.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from tagops.errors import TagopsError

if TYPE_CHECKING:
    from tagops.settings import Settings


def default_database_url(settings: Settings) -> str:
    """SQLite file under ``TAGOPS_HOME/serving``."""
    return f"sqlite:///{settings.home / 'serving' / 'predictions.db'}"


def database_url_for(config_url: str | None, settings: Settings) -> str:
    """``TAGOPS_SERVE_DATABASE_URL``, else the config's ``database_url``, else SQLite under TAGOPS_HOME.

    Both were checked when they were read (``tagops.settings.check_database_url``), so a URL that cannot be
    parsed was already named by its variable, or by its config file and field.
    """
    return settings.serve.database_url or config_url or default_database_url(settings)


def journal_folder(settings: Settings, url: str) -> Path:
    """Where this host journals rows for the database at ``url`` (one folder per database).

    Keyed by the URL, so rows journaled for one database are never replayed into another.
    """
    return settings.home / "serving" / "journal" / hashlib.sha256(url.encode()).hexdigest()[:16]


def safe_url(url: str) -> str:
    """The URL with any password masked, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL is reported by create_engine; never echo it whole
        return "<invalid database URL>"


def private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only (0600, its new folders 0700), or tighten it to that.

    The prediction log holds every user's text and the API keys' hashes; SQLite creates its WAL and
    shared-memory files with the database file's permissions, so they follow.
    """
    missing = [parent for parent in (path.parent, *path.parent.parents) if not parent.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


def create_log_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and its folder created.

    A plain ``postgresql://`` URL uses psycopg 3 (installed with tagops), not SQLAlchemy's default
    psycopg2; a URL naming its driver (``postgresql+psycopg2://``) keeps it.
    """
    try:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True)
    except ImportError as error:  # e.g. postgresql:// without psycopg2 installed
        raise TagopsError(f"{safe_url(url)}: its database driver is not installed ({error.name})") from None
    except ArgumentError as error:  # not a URL, or a dialect SQLAlchemy does not know
        raise TagopsError(f"{safe_url(url)}: {error}") from None
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            private_file(Path(database))
        except OSError as error:
            raise TagopsError(
                f"{safe_url(url)}: cannot create the database file ({error.strerror or error})"
            ) from None
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
