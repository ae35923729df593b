"""Run a turn every period, never two at once, each turn one line of the loop's own log.

    tagops loop run --every 15m     # until SIGTERM or SIGINT (a laptop, a compose service)
    tagops loop run --once          # one turn, for a scheduler a team already has (cron, a CronJob, CI)

A turn starts every ``every_s`` seconds from the start of the previous one; a turn that runs longer than
the period delays the next rather than overlapping it. Two guards keep turns from overlapping across
processes: a file lock beside the log (processes sharing a home) and a lease the caller supplies (the
registry's, honoured by every machine sharing a team registry). A turn that finds either held is
``skipped`` and logged, not queued. A turn that raises is ``failed``: the error is logged and the next
turn runs on time. A stop request (the CLI's SIGTERM handler) is honoured between turns: a running turn
(a promotion, a reload) finishes first.

The log is JSON lines (``loop.jsonl``): one record per turn with its start, end, status, result or error.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

TurnStatus = Literal["done", "skipped", "failed"]


class TurnHeldError(Exception):
    """Another process is running a turn (raised by a lease to skip this one)."""


@dataclass(frozen=True)
class TurnRecord:
    """One turn: when it ran, how it ended, and what it returned or why it did not."""

    turn: int
    status: TurnStatus
    started_at: str
    finished_at: str
    seconds: float
    holder: str
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as one JSON object (a line of the log)."""
        return asdict(self)


@dataclass
class Schedule:
    """What to run, how often, and where the lock and the log lie.

    Attributes:
        turn: The work of one turn; its JSON-ready return value is the record's ``result``.
        every_s: Seconds between the starts of two turns.
        lock_path: The file lock that processes sharing a home take for a turn.
        log_path: The JSON-lines log, appended to.
        lease: Called for each turn; a context manager held around it that raises :class:`TurnHeldError`
            when another machine holds the turn (``None``: the file lock only).
        clock: Monotonic seconds (a test's fake clock).
        wait: Waits up to the given seconds and returns True when a stop was requested meanwhile.

    """

    turn: Callable[[], dict[str, Any]]
    every_s: float
    lock_path: Path
    log_path: Path
    lease: Callable[[], AbstractContextManager[None]] | None = None
    clock: Callable[[], float] = time.monotonic
    stop: threading.Event = field(default_factory=threading.Event)
    wait: Callable[[float], bool] | None = None

    def _wait(self, seconds: float) -> bool:
        if self.wait is not None:
            return self.wait(seconds)
        return self.stop.wait(seconds)


def holder_name() -> str:
    """The name the log gives this process: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout as error:
        raise TurnHeldError(f"another process on this host holds {path}") from error
    try:
        yield
    finally:
        lock.release()


def append_record(log_path: Path, record: TurnRecord) -> None:
    """Append one turn's record to the JSON-lines log (one write, so lines from processes never mix)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record.to_json(), default=str, sort_keys=True) + "\n"
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write(line)


def read_records(log_path: Path, *, last: int | None = None) -> list[dict[str, Any]]:
    """The log's records, oldest first (the last ``last`` of them); a torn last line is left out."""
    if not log_path.is_file():
        return []
    records = []
    for line in log_path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            logger.warning("%s: skipping a line that is not JSON: %.80s", log_path, line)
    return records[-last:] if last else records


def run_turn(schedule: Schedule, number: int) -> TurnRecord:
    """Run one turn under the file lock and the lease; its record, also appended to the log."""
    started_at, started = _now(), time.perf_counter()
    status: TurnStatus = "done"
    result: dict[str, Any] | None = None
    error: str | None = None
    try:
        with _file_lock(schedule.lock_path), (schedule.lease or nullcontext)():
            result = schedule.turn()
    except TurnHeldError as held:
        status, error = "skipped", str(held)
        logger.info("loop: turn %d skipped: %s", number, held)
    except Exception as failure:  # the next turn runs on time; the error is in the record and the log
        status, error = "failed", f"{type(failure).__name__}: {failure}"
        logger.exception("loop: turn %d failed", number)
    record = TurnRecord(
        turn=number,
        status=status,
        started_at=started_at,
        finished_at=_now(),
        seconds=round(time.perf_counter() - started, 3),
        holder=holder_name(),
        result=result,
        error=error,
    )
    append_record(schedule.log_path, record)
    return record


def run_schedule(schedule: Schedule, *, max_turns: int | None = None) -> list[TurnRecord]:
    """Run turns every ``every_s`` until a stop is requested (or ``max_turns`` ran); their records."""
    records: list[TurnRecord] = []
    number = 0
    while not schedule.stop.is_set():
        number += 1
        began = schedule.clock()
        records.append(run_turn(schedule, number))
        if max_turns is not None and number >= max_turns:
            break
        remaining = schedule.every_s - (schedule.clock() - began)
        if remaining > 0 and schedule._wait(remaining):
            break
    return records


@contextmanager
def registry_lease(registry: Any, *, ttl_s: float) -> Iterator[None]:
    """The registry's ``loop`` lease, taken without waiting: held elsewhere means :class:`TurnHeldError`.

    Only taking the lease is translated; a :class:`~tagops.errors.RegistryError` raised by the turn itself
    stays a failure.
    """
    from contextlib import ExitStack

    from tagops.errors import RegistryError

    stack = ExitStack()
    try:
        stack.enter_context(registry.lease("loop", ttl_s=ttl_s, timeout_s=0.0))
    except RegistryError as error:
        raise TurnHeldError(str(error)) from error
    with stack:
        yield
