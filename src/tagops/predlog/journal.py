"""A local append-only journal of log rows accepted but perhaps not yet in the database.

The prediction log's writer batches rows in memory for up to ``flush_interval_s`` before one
transaction (a commit per request would cost every request a database round trip). Without a journal, a
replica killed with SIGKILL loses the rows of that window, and rows that still fail after the writer's
retries (database down) are lost too. With one, :meth:`Journal.append` first writes each request's rows
as one JSON line to a segment file in a single ``write`` call: once it returns, the rows survive the
process (the kernel's page cache holds them; a crash of the whole machine is not covered, which would need
an ``fsync`` per request). The writer tells the journal which rows reached the database; a segment with
none outstanding is deleted.

Each open segment holds an exclusive ``flock`` for as long as its process may still write to it or owes
it rows. :meth:`Journal.replayable` hands out every segment of the folder whose lock is free: the segments
of a dead process (the kernel drops its locks) and the segments this process kept after a failed write.
Replaying them is idempotent (the rows carry their primary keys), so two replicas that race for the same
segment or a replay interrupted half way do no harm.

A journal may be capped (``max_bytes``, for the whole folder: every table and process that journals for
the same database). During a long database outage segments pile up; past the cap :meth:`Journal.append`
refuses with :class:`JournalFullError` instead of filling the disk that the model registry and the rest of
the machine share. The folder's size is read from disk at the first append and then by the log writer's
thread (:meth:`Journal.refresh_size`, at most once a second); appends in between add their own bytes. So
segments other replicas add count within a second, and room freed by a replay is used again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SUFFIX = ".jsonl"
#: Least time between two reads of the folder's size by :meth:`Journal.refresh_size`.
RESCAN_S = 1.0


class JournalFullError(OSError):
    """The journal folder holds its cap (``max_bytes``): rows are not journaled until room is freed."""


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot journal a {type(value).__name__}")


def encode_rows(rows: Sequence[dict[str, Any]]) -> bytes:
    """One JSON line holding ``rows`` (datetimes as ISO 8601 text)."""
    return json.dumps(list(rows), default=_encode, separators=(",", ":")).encode() + b"\n"


@dataclass
class _Segment:
    number: int
    path: Path
    fd: int
    outstanding: int = 0
    failed: bool = False


@dataclass(frozen=True)
class Replay:
    """Rows read back from one unlocked segment; :meth:`Journal.finish` removes it once they are stored."""

    path: Path
    fd: int
    rows: list[dict[str, Any]]
    #: Lines that were not valid JSON (a torn write from outside, a hand edit): reported, never guessed.
    bad_lines: int


class Journal:
    """Segment files ``<name>-<host>-<pid>-<n>-<random>.jsonl`` in ``folder``, for one table.

    Thread-safe: request threads append, the log writer rotates and settles.
    """

    def __init__(self, folder: Path | str, name: str, *, max_bytes: int | None = None) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive or None, not {max_bytes}")
        self.folder = Path(folder)
        self.name = name
        self.max_bytes = max_bytes
        self._scanned_bytes: int | None = None  # the folder's size at the last read (None: not read yet)
        self._appended_bytes = 0  # written by this journal since then
        self._scanned_at = -RESCAN_S
        self._lock = threading.Lock()
        self._current: _Segment | None = None
        self._open: dict[int, _Segment] = {}
        self._numbers = 0
        self._tag = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def append(self, rows: Sequence[dict[str, Any]]) -> int:
        """Write ``rows`` as one line of the current segment; returns the segment's number.

        Raises ``OSError`` (disk full, folder gone; :class:`JournalFullError` at the cap) and ``TypeError`` (a
        value JSON cannot hold): the caller decides what an unjournaled row means.
        """
        line = encode_rows(rows)
        with self._lock:
            if self.max_bytes is not None:
                self._check_room(len(line))
            segment = self._current if self._current is not None else self._start_segment()
            written = os.write(segment.fd, line)
            if written != len(line):  # only a full disk or a quota cuts a regular file's write short
                os.ftruncate(segment.fd, os.lseek(segment.fd, 0, os.SEEK_CUR) - written)
                os.lseek(segment.fd, 0, os.SEEK_END)
                raise OSError(f"journal {segment.path}: short write ({written} of {len(line)} bytes)")
            segment.outstanding += len(rows)
            self._appended_bytes += written
            return segment.number

    def _check_room(self, size: int) -> None:
        assert self.max_bytes is not None
        if self._scanned_bytes is None:  # the first append reads the folder once
            self._scanned_bytes, self._scanned_at = self.size(), time.monotonic()
        held = self._scanned_bytes + self._appended_bytes
        if held + size > self.max_bytes:
            raise JournalFullError(
                f"journal folder {self.folder} holds {held} bytes, its cap is {self.max_bytes} "
                "(log_journal_max_mb)"
            )

    def refresh_size(self) -> None:
        """Read the folder's size again, at most once per ``RESCAN_S`` (no-op without a cap).

        Called by the log writer's thread, not on the request path: during an outage the folder may hold
        thousands of segments. Between reads, appends count their own bytes; segments that other
        processes add, or that replays remove, are seen at the next read.
        """
        if self.max_bytes is None:
            return
        now = time.monotonic()
        if now - self._scanned_at < RESCAN_S:
            return
        with self._lock:
            counted = self._appended_bytes
        size = self.size()  # without the lock: appends go on meanwhile
        with self._lock:
            # Appends made during the read may be in ``size`` too: counting them twice errs on the safe side.
            self._scanned_bytes, self._appended_bytes, self._scanned_at = (
                size,
                self._appended_bytes - counted,
                now,
            )

    def size(self) -> int:
        """Bytes of every file in the folder (all tables, all processes, set-aside ``.bad`` files too)."""
        total = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self.folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):  # removed meanwhile
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        return total

    def _start_segment(self) -> _Segment:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # rows hold user text
        self._numbers += 1
        path = self.folder / f"{self.name}-{self._tag}-{self._numbers}{SUFFIX}"
        # Created and locked under a name no replayer lists, then renamed (the lock stays with the file):
        # a replayer must never find a segment of a live process unlocked, even for an instant.
        hidden = path.with_name(f".{path.name}.new")
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            hidden.rename(path)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                hidden.unlink()
            raise
        segment = _Segment(self._numbers, path, fd)
        self._current = self._open[segment.number] = segment
        return segment

    def rotate(self) -> None:
        """Start a new segment at the next append, so that the current one can be settled and removed."""
        with self._lock:
            segment, self._current = self._current, None
            if segment is not None:
                self._close_if_settled(segment)

    def settle(self, number: int, count: int, *, failed: bool = False) -> None:
        """``count`` rows of segment ``number`` reached the database (or, ``failed``, did not).

        A segment that no longer takes appends and owes nothing is removed, unless some of its rows
        failed: then it is closed and kept, which frees its lock for :meth:`replayable`.
        """
        with self._lock:
            segment = self._open.get(number)
            if segment is None:
                return
            segment.outstanding -= count
            segment.failed = segment.failed or failed
            self._close_if_settled(segment)

    def _close_if_settled(self, segment: _Segment) -> None:
        if segment is self._current or segment.outstanding > 0:
            return
        del self._open[segment.number]
        if segment.failed:
            logger.warning("prediction log: rows kept in %s for replay", segment.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()  # while still locked: no replayer reads a settled segment
        os.close(segment.fd)

    def close(self) -> None:
        """Close every segment: settled ones are removed, others stay for a replay."""
        with self._lock:
            self._current = None
            for segment in list(self._open.values()):
                if segment.outstanding > 0:
                    segment.failed = True
                    segment.outstanding = 0
                self._close_if_settled(segment)

    def files(self) -> dict[str, int]:
        """Segments (``segment``: this journal's name, any process) and set-aside files (``bad``) on disk."""
        if not self.folder.is_dir():
            return {"segment": 0, "bad": 0}
        return {
            "segment": sum(1 for _ in self.folder.glob(f"{self.name}-*{SUFFIX}")),
            "bad": sum(1 for _ in self.folder.glob(f"{self.name}-*.bad")),
        }

    @property
    def open_segments(self) -> int:
        """Segments this journal still holds (open, or owed rows)."""
        with self._lock:
            return len(self._open)

    def replayable(self) -> Iterator[Replay]:
        """Each segment of this journal's name whose lock is free, read and locked; see :meth:`finish`.

        The caller must call :meth:`finish` (stored) or :meth:`release` (not stored) for every one.
        """
        if not self.folder.is_dir():
            return
        now = time.time()
        for hidden in self.folder.glob(f".{self.name}-*{SUFFIX}.new"):
            # A live process renames its new segment within microseconds: a minute-old one belongs
            # to a process killed before the rename, and holds nothing (rows come after the rename).
            with contextlib.suppress(OSError):
                if now - hidden.stat().st_mtime > 60:
                    hidden.unlink()
        with self._lock:
            own = {segment.path for segment in self._open.values()}
        for path in sorted(self.folder.glob(f"{self.name}-*{SUFFIX}")):
            if path in own:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:  # replayed by someone else meanwhile
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is alive and still owes it rows
                os.close(fd)
                continue
            if os.fstat(fd).st_nlink == 0:  # removed by a replayer that held the lock before us
                os.close(fd)
                continue
            rows, bad = _read_rows(fd)
            if bad:
                logger.error("prediction log: %d unreadable lines in journal %s", bad, path)
            yield Replay(path, fd, rows, bad)

    def finish(self, replay: Replay) -> None:
        """The replayed rows are stored: remove the segment (a segment with unreadable lines is kept)."""
        if replay.bad_lines:
            self.set_aside(replay, f"{replay.bad_lines} unreadable lines")
            return
        with contextlib.suppress(FileNotFoundError):
            replay.path.unlink()
        os.close(replay.fd)

    @staticmethod
    def set_aside(replay: Replay, reason: str) -> Path:
        """Rename the segment to ``.bad`` (never replayed again, kept for a person to inspect)."""
        bad = replay.path.with_suffix(".bad")
        with contextlib.suppress(FileNotFoundError):
            replay.path.rename(bad)
        os.close(replay.fd)
        logger.error("prediction log: journal %s set aside as %s: %s", replay.path.name, bad.name, reason)
        return bad

    @staticmethod
    def release(replay: Replay) -> None:
        """The replay could not be stored: unlock the segment for a later try."""
        os.close(replay.fd)


def _read_rows(fd: int) -> tuple[list[dict[str, Any]], int]:
    with os.fdopen(os.dup(fd), "rb") as file:
        data = file.read()
    rows: list[dict[str, Any]] = []
    bad = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            batch = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(batch, list) or not all(isinstance(row, dict) for row in batch):
            bad += 1
            continue
        rows.extend(batch)
    return rows, bad
