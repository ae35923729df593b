"""The prediction log's writer: one background thread per table and process, with a local journal.

A request only appends its rows to an in-memory queue and never waits for the database. The writer
inserts what arrives within ``flush_interval_s`` of a first row (up to ``batch_rows``) in one
transaction, retries a failed batch, and flushes what is queued on shutdown. With a journal folder (the
serving default), each request's rows are also appended to a local file first
(:mod:`tagops.predlog.journal`): rows of a killed process, and rows the database refused after the
retries, are written later by the next writer on the same host that finds them (at its start, then every
``recover_interval_s``). A row that cannot be written (queue full, writer stopped, database down after
retries) is counted through ``on_rows`` and logged, never dropped silently.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    SQLAlchemyError,
    StatementError,
)

from tagops.predlog.journal import Journal
from tagops.predlog.retention import LogSize, RetentionPolicy, measure, prune
from tagops.predlog.schema import UTCDateTime, create_tables, predictions

logger = logging.getLogger(__name__)


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


_STOP = object()
#: Put by :meth:`LogWriter.flush`: the writer stops waiting for more rows and writes what it has.
_FLUSH = object()


@dataclass(frozen=True)
class WriterOptions:
    """How a writer queues, batches, retries and journals (the serving config's ``log_*`` fields)."""

    #: Rows accepted but not yet written, at most; past it a request's rows are refused (and counted).
    queue_rows: int = 100_000
    #: Rows per transaction, at most.
    batch_rows: int = 500
    #: How long the writer collects rows after a first one before it writes them.
    flush_interval_s: float = 0.2
    #: Attempts per batch before its rows are counted as failed (and left to the journal's replay).
    retries: int = 3
    #: Journal rows there before queueing them; ``None``: rows live only in memory until written.
    journal_dir: Path | None = None
    #: Cap on the journal folder: past it, rows are queued without being journaled.
    journal_max_bytes: int | None = None
    #: How often the writer replays journal segments that no live writer holds.
    recover_interval_s: float = 30.0
    #: What the prediction table's writer deletes from the log (``None``: nothing); shadow writers never
    #: prune, the predictions' pass takes their shadow rows with them.
    retention: RetentionPolicy | None = None
    #: How often the retention pass runs and the log's size is measured (the first time when the
    #: prediction table's writer starts).
    retention_interval_s: float = 3600.0


class LogWriter:
    """Appends rows to one table of the prediction log from a background thread.

    ``on_rows(outcome, count)`` is told about every row written, dropped, failed, recovered or queued
    without a journal line (``unjournaled``); the app feeds its metrics from it. ``table`` is the table
    the writer appends to (the shadow log uses a second writer on the same ``engine``, with a queue of
    its own). See :class:`WriterOptions` for batching and the journal (the module's docstring for
    what the journal makes durable).
    """

    def __init__(
        self,
        engine: Engine,
        table: Table = predictions,
        options: WriterOptions | None = None,
        *,
        on_rows: Callable[[str, int], None] | None = None,
    ) -> None:
        options = options or WriterOptions()
        self.engine = engine
        self.table = table
        self.options = options
        self.queue_rows = options.queue_rows
        self.batch_rows = options.batch_rows
        self.flush_interval_s = options.flush_interval_s
        self.retries = options.retries
        self.on_rows = on_rows
        self.journal = (
            None
            if options.journal_dir is None
            else Journal(options.journal_dir, table.name, max_bytes=options.journal_max_bytes)
        )
        self.recover_interval_s = options.recover_interval_s
        self.written_rows = 0
        self.dropped_rows = 0
        self.failed_rows = 0
        self.recovered_rows = 0
        self.unjournaled_rows = 0
        self.pruned_rows = 0
        #: The log's size at the last retention pass (the prediction table's writer only; ``None`` before).
        self.size: LogSize | None = None
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
        """Create the log's tables that do not exist yet (idempotent)."""
        create_tables(self.engine)

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
    def alive(self) -> bool:
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
        if self.alive:
            self._queue.put(_FLUSH)
            self._hurry.set()
        return wait_drained(self._queue, time.monotonic() + timeout, lambda: self.alive)

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

    # ---------------------------------------------------------------------------------------- rows
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
        elif outcome == "pruned":
            self.pruned_rows += count
        else:
            self.failed_rows += count
        if self.on_rows is not None:
            self.on_rows(outcome, count)

    def _run(self) -> None:
        self._recover_logged()
        next_recovery = time.monotonic() + self.recover_interval_s
        next_prune = time.monotonic()
        stopping = False
        while not stopping:
            if self.table is predictions and time.monotonic() >= next_prune:
                if self._prunes:
                    self._prune_logged()
                self._measure_logged()
                next_prune = time.monotonic() + self.options.retention_interval_s
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
            # write per request would cost each request a commit, and the GIL the writer holds meanwhile
            # delays the request threads. The writer sleeps through that window and then takes what
            # queued, rather than waiting on the queue: a waiting writer is woken by every put, and each
            # wake-up takes the GIL from the request path for a moment (benchmarks/serve.py, latency at
            # concurrency 1). Only flush() and stop() cut the window short, or a full batch already queued.
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

    @property
    def _prunes(self) -> bool:
        policy = self.options.retention
        return self.table is predictions and policy is not None and policy.active

    def _prune_logged(self) -> None:
        """One retention pass between batches; a failed pass is logged and tried again next time."""
        assert self.options.retention is not None
        try:
            result = prune(self.engine, self.options.retention)
        except SQLAlchemyError as error:
            logger.error("prediction log: retention pass failed, will retry: %s", error)
            return
        except Exception:  # the writer thread must outlive any retention problem
            logger.exception("prediction log: retention pass failed, will retry")
            return
        if result.predictions:
            logger.info(
                "prediction log: retention deleted %d predictions (%d shadow answers)",
                result.predictions,
                result.shadow_predictions,
            )
            self._count("pruned", result.predictions)

    def _measure_logged(self) -> None:
        try:
            self.size = measure(self.engine)
        except Exception as error:  # the writer thread must outlive any measuring problem
            logger.warning("prediction log: could not measure its size: %s", error)

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
