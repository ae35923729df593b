"""Move a prediction log to another database (the embedded SQLite log to a team's PostgreSQL), verified.

Every table of the log is copied in primary-key order and in batches; rows the target already holds
(same primary key) are left as they are, so a migration interrupted half way is run again to finish it.
Then each table is verified: the row count and a SHA-256 over every row, in primary-key order, written in
one canonical form (UTC timestamps, JSON with sorted keys), must be equal on both sides; a difference is
an error naming the table. The source is only read.

The serving process's own bookkeeping (deployment targets, replica heartbeats, rollouts) is not copied:
it describes processes of the old database, which the new one does not have.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Engine

from tagops.errors import TagopsError
from tagops.predlog.schema import (
    api_keys,
    create_tables,
    feedback,
    feedback_reviews,
    predictions,
    shadow_predictions,
)

logger = logging.getLogger(__name__)

#: In the order rows may refer to each other's: keys, then predictions, then what points at them.
TABLES: tuple[Table, ...] = (api_keys, predictions, feedback, feedback_reviews, shadow_predictions)


class MigrationError(TagopsError):
    """The target does not hold what the source holds after the copy."""


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _rows(engine: Engine, table: Table, batch_rows: int) -> Iterator[list[dict[str, Any]]]:
    """Every row of ``table`` in primary-key order, in batches (keyset pagination: no OFFSET rescans)."""
    (key,) = table.primary_key.columns
    last: Any = None
    while True:
        query = select(table).order_by(key).limit(batch_rows)
        if last is not None:
            query = query.where(key > last)
        with engine.connect() as connection:
            batch = [dict(row._mapping) for row in connection.execute(query)]
        if not batch:
            return
        yield batch
        last = batch[-1][key.name]


def _add_rows(digest: Any, batch: list[dict[str, Any]]) -> None:
    """Add rows to a running SHA-256, each as one line of canonical JSON."""
    for row in batch:
        line = json.dumps({k: _canonical(v) for k, v in row.items()}, sort_keys=True, default=str)
        digest.update(line.encode())
        digest.update(b"\n")


def table_digest(engine: Engine, table: Table, *, batch_rows: int = 5000) -> tuple[int, str]:
    """(rows, SHA-256 of every row in primary-key order, in canonical form)."""
    digest, count = hashlib.sha256(), 0
    for batch in _rows(engine, table, batch_rows):
        _add_rows(digest, batch)
        count += len(batch)
    return count, digest.hexdigest()


def migrate_log(
    source: Engine,
    target: Engine,
    *,
    batch_rows: int = 2000,
    on_progress: Callable[[str, int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Copy every table of the log from ``source`` to ``target`` and verify it.

    Returns, per table, ``rows``, ``copied`` (new in the target), ``already`` (there before) and ``sha256``.

    Raises:
        MigrationError: a table's count or checksum differs after the copy (the target holds rows the
            source does not, or a row with the same key and other values).

    """
    create_tables(target)
    summary: dict[str, dict[str, Any]] = {}
    for table in TABLES:
        (key,) = table.primary_key.columns
        copied = already = 0
        source_digest = hashlib.sha256()  # the source is read once: copied and digested together
        for batch in _rows(source, table, batch_rows):
            _add_rows(source_digest, batch)
            keys = [row[key.name] for row in batch]
            with target.begin() as connection:
                present: set[Any] = set()
                for start in range(0, len(keys), 500):  # bounded IN lists
                    chunk = keys[start : start + 500]
                    present |= {k for (k,) in connection.execute(select(key).where(key.in_(chunk)))}
                missing = [row for row in batch if row[key.name] not in present]
                if missing:
                    connection.execute(table.insert(), missing)
            copied += len(missing)
            already += len(batch) - len(missing)
            if on_progress is not None:
                on_progress(table.name, copied + already)
        rows, source_sha = copied + already, source_digest.hexdigest()
        target_rows, target_sha = table_digest(target, table)
        if (rows, source_sha) != (target_rows, target_sha):
            raise MigrationError(
                f"table {table.name}: the target holds {target_rows} rows (sha256 {target_sha[:12]}) where "
                f"the source holds {rows} (sha256 {source_sha[:12]}); it had rows of its own or other values "
                "under the same keys. Nothing in the source changed."
            )
        summary[table.name] = {"rows": rows, "copied": copied, "already": already, "sha256": source_sha}
        logger.info("migrated %s: %d rows (%d copied), sha256 %s", table.name, rows, copied, source_sha[:12])
    return summary
