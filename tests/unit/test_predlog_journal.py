"""The prediction log's journal: rows of a killed process and of a failed write are written later."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tagops.predlog.engine import journal_folder
from tagops.predlog.journal import Journal, JournalFullError, encode_rows
from tagops.predlog.log import PredictionLog
from tagops.predlog.reader import LogReader
from tagops.predlog.schema import shadow_predictions
from tagops.predlog.writer import LogWriter, WriterOptions
from tests.unit.serving_fakes import settings_for
from tests.unit.test_predlog_writer import rows

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def journaled_store(tmp_path: Path, **kwargs: Any) -> LogWriter:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    on_rows = kwargs.pop("on_rows", None)
    options = WriterOptions(journal_dir=tmp_path / "journal", **kwargs)
    return PredictionLog(url, options=options, on_rows=on_rows).writer


def count_predictions(writer: LogWriter) -> int:
    return LogReader(writer.engine).count_predictions()


def segments(folder: Path, pattern: str = "*.jsonl") -> list[Path]:
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


def test_settled_segments_are_removed_and_nothing_is_left_after_a_clean_stop(tmp_path: Path) -> None:
    store = journaled_store(tmp_path, flush_interval_s=0.01)
    store.start()
    for _ in range(50):
        assert store.submit(rows(3))
    assert store.flush(10)
    store.stop()
    assert count_predictions(store) == 150
    assert segments(tmp_path / "journal") == []
    assert store.journal is not None and store.journal.open_segments == 0


def test_rows_of_a_killed_process_are_written_by_the_next_writer(tmp_path: Path) -> None:
    # The child queues rows, then is killed before its writer's first transaction (it waits 60 s for
    # more rows): without the journal those rows would be gone.
    child = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pathlib import Path
        from tagops.predlog.log import PredictionLog
        from tagops.predlog.writer import WriterOptions
        from tests.unit.test_predlog_writer import rows
        folder = Path({str(tmp_path / "journal")!r})
        options = WriterOptions(flush_interval_s=60, batch_rows=10_000, journal_dir=folder)
        store = PredictionLog({f"sqlite:///{tmp_path / 'log.db'}"!r}, options=options).writer
        store.start()
        ids = []
        for _ in range(40):
            batch = rows(2)
            ids.extend(row["id"] for row in batch)
            assert store.submit(batch)
        print(" ".join(ids), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    killed_ids = set(result.stdout.split())
    assert len(killed_ids) == 80
    assert len(segments(tmp_path / "journal")) == 1

    store = journaled_store(tmp_path, flush_interval_s=0.01)
    store.create_tables()
    assert count_predictions(store) == 0  # the child never wrote
    store.start()  # the writer replays what it finds before anything else
    store.submit(rows(1))
    assert store.flush(10)
    store.stop()
    with store.engine.connect() as connection:
        found = {row[0] for row in connection.execute(text("SELECT id FROM predictions"))}
    assert killed_ids <= found and len(found) == 81
    assert store.recovered_rows == 80
    assert segments(tmp_path / "journal") == []


def test_rows_a_failed_write_leaves_are_kept_and_written_on_the_next_replay(tmp_path: Path) -> None:
    events: list[tuple[str, int]] = []
    store = journaled_store(
        tmp_path, flush_interval_s=0.01, retries=1, on_rows=lambda o, n: events.append((o, n))
    )
    store.start()
    with store.engine.begin() as connection:  # the database loses its table: every write fails
        connection.execute(text("ALTER TABLE predictions RENAME TO predictions_away"))
    sent = [rows(2) for _ in range(5)]
    for batch in sent:
        store.submit(batch)
    assert store.flush(10)
    assert store.failed_rows == 10
    kept = segments(tmp_path / "journal")
    assert kept, "the failed rows' segment must stay on disk"

    with store.engine.begin() as connection:  # the database is back
        connection.execute(text("ALTER TABLE predictions_away RENAME TO predictions"))
    assert store.recover() == 10
    assert count_predictions(store) == 10
    assert ("recovered", 10) in events
    assert segments(tmp_path / "journal") == []
    assert store.recover() == 0  # nothing twice
    store.stop()


def test_a_live_writers_segment_is_not_replayed_by_another_store(tmp_path: Path) -> None:
    owner = journaled_store(tmp_path, flush_interval_s=60, batch_rows=10_000)
    owner.create_tables()
    owner.submit(rows(4))  # journaled, queued, not written (no writer started)
    other = journaled_store(tmp_path)
    assert other.recover() == 0
    assert count_predictions(other) == 0
    assert len(segments(tmp_path / "journal")) == 1


def test_replay_skips_rows_already_written_and_sets_unreadable_lines_aside(tmp_path: Path) -> None:
    store = journaled_store(tmp_path)
    store.create_tables()
    written, missing = rows(3), rows(2)
    with store.engine.begin() as connection:
        connection.execute(store.table.insert(), written)
    folder = tmp_path / "journal"
    folder.mkdir()
    segment = folder / "predictions-deadhost-1-abc-1.jsonl"
    segment.write_bytes(encode_rows(written) + encode_rows(missing) + b'[{"id": "torn')
    assert store.recover() == 2
    assert count_predictions(store) == 5
    assert segments(folder) == []
    assert [path.name for path in segments(folder, "*.bad")] == ["predictions-deadhost-1-abc-1.bad"]


def test_rows_the_table_refuses_are_set_aside_not_retried_forever(tmp_path: Path) -> None:
    store = journaled_store(tmp_path)
    store.create_tables()
    folder = tmp_path / "journal"
    folder.mkdir()
    bad = [{key: value for key, value in row.items() if key != "tag"} for row in rows(2)]  # NOT NULL column
    (folder / "predictions-deadhost-2-abc-1.jsonl").write_bytes(encode_rows(bad))
    (folder / "predictions-deadhost-3-abc-1.jsonl").write_bytes(encode_rows(rows(3)))
    assert store.recover() == 3
    assert len(segments(folder, "*.bad")) == 1
    assert segments(folder) == []


def test_journal_lines_hold_timestamps_as_text_and_replay_restores_them(tmp_path: Path) -> None:
    batch = rows(1)
    line = json.loads(encode_rows(batch))
    assert line[0]["created_at"] == batch[0]["created_at"].isoformat()
    store = journaled_store(tmp_path)
    store.create_tables()
    folder = tmp_path / "journal"
    folder.mkdir()
    (folder / "predictions-deadhost-4-abc-1.jsonl").write_bytes(encode_rows(batch))
    assert store.recover() == 1
    [row] = LogReader(store.engine).read_predictions(
        since=batch[0]["created_at"], until=batch[0]["created_at"].replace(year=2999)
    )
    assert row["created_at"] == batch[0]["created_at"]


def test_each_table_and_database_has_its_own_journal(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert journal_folder(settings, "sqlite:///a.db") != journal_folder(settings, "sqlite:///b.db")
    store = journaled_store(tmp_path)
    shadow = LogWriter(store.engine, shadow_predictions, WriterOptions(journal_dir=tmp_path / "journal"))
    store.create_tables()
    folder = tmp_path / "journal"
    folder.mkdir()
    (folder / "predictions-deadhost-5-abc-1.jsonl").write_bytes(encode_rows(rows(2)))
    assert shadow.recover() == 0  # a champion segment is never replayed into the shadow table
    assert store.recover() == 2


def test_an_unwritable_journal_still_queues_the_rows(tmp_path: Path) -> None:
    blocker = tmp_path / "journal"
    blocker.write_text("a file where the folder should be")
    store = journaled_store(tmp_path, flush_interval_s=0.01)
    store.start()
    assert store.submit(rows(3))
    assert store.flush(10)
    store.stop()
    assert count_predictions(store) == 3


def test_a_capped_journal_refuses_past_its_cap_and_takes_rows_again_once_room_is_freed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tagops.predlog.journal.RESCAN_S", 0.0)
    batch = rows(1)  # one batch appended again and again: every line has the same length
    line = len(encode_rows(batch))
    folder = tmp_path / "journal"
    folder.mkdir()
    (folder / "predictions-other-1-x-1.bad").write_bytes(b"x" * line)  # counts: the cap is for the folder
    journal = Journal(folder, "predictions", max_bytes=4 * line)
    for _ in range(3):
        journal.append(batch)
    with pytest.raises(JournalFullError, match=r"holds .* bytes, its cap is"):
        journal.append(batch)
    assert journal.size() == 4 * line  # nothing half written
    (folder / "predictions-other-1-x-1.bad").unlink()  # room freed (here: by a person, or a replay)
    with pytest.raises(JournalFullError):
        journal.append(batch)  # not seen until the folder is read again
    journal.refresh_size()  # the log writer's thread does this
    journal.append(batch)
    with pytest.raises(JournalFullError):
        journal.append(batch)
    with pytest.raises(ValueError, match="max_bytes"):
        Journal(folder, "predictions", max_bytes=0)


def test_the_writer_rereads_the_folder_so_other_replicas_segments_count_toward_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tagops.predlog.journal.RESCAN_S", 0.0)
    store = journaled_store(tmp_path, flush_interval_s=0.01, journal_max_bytes=100_000)
    store.start()
    assert store.submit(rows(1))  # the first append reads the folder: nearly empty
    assert store.flush(10)
    # The shared folder grows past the cap (here a set-aside file; another replica's segments count alike).
    (tmp_path / "journal" / "predictions-other-2-y-1.bad").write_bytes(b"[]\n" * 40_000)
    time.sleep(0.3)  # a few writer iterations
    assert store.submit(rows(1))
    assert store.flush(10)
    store.stop()
    assert store.unjournaled_rows == 1
    assert count_predictions(store) == 2


def test_past_the_journal_cap_rows_are_still_queued_written_and_counted_unjournaled(tmp_path: Path) -> None:
    events: list[tuple[str, int]] = []
    created = datetime(2026, 11, 28, 3, 0, 0, 123456, tzinfo=UTC)
    batches = [[{**row, "created_at": created} for row in rows(2)] for _ in range(5)]
    line = len(encode_rows(batches[0]))  # ids differ, lengths do not
    store = journaled_store(
        tmp_path,
        flush_interval_s=60,
        batch_rows=10_000,
        journal_max_bytes=3 * line,
        on_rows=lambda o, n: events.append((o, n)),
    )
    store.create_tables()
    for batch in batches:
        assert store.submit(batch)  # an outage in effect: no writer runs, segments pile up
    assert store.unjournaled_rows == 4
    assert ("unjournaled", 2) in events
    journal_bytes = sum(path.stat().st_size for path in segments(tmp_path / "journal"))
    assert journal_bytes == 3 * line
    store.start()
    assert store.flush(10)
    store.stop()
    assert count_predictions(store) == 10
    assert segments(tmp_path / "journal") == []


def test_segments_rotate_so_a_busy_writer_keeps_few_files(tmp_path: Path) -> None:
    journal = Journal(tmp_path, "predictions")
    first = journal.append(rows(2))
    journal.rotate()
    second = journal.append(rows(1))
    assert second != first
    journal.settle(first, 2)
    assert len(segments(tmp_path)) == 1  # the first one is settled and removed; the current stays
    journal.settle(second, 1)
    assert len(segments(tmp_path)) == 1  # still current: appends may follow
    journal.rotate()
    assert segments(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_a_busy_writer_still_replays_what_a_dead_process_left(tmp_path: Path) -> None:
    import threading
    import time

    store = journaled_store(tmp_path, flush_interval_s=0.05, recover_interval_s=0.2)
    store.start()
    stop = threading.Event()

    def steady_load() -> None:  # a row every 10 ms: the writer's queue is never quiet for 50 ms
        while not stop.is_set():
            store.submit(rows(1))
            time.sleep(0.01)

    load = threading.Thread(target=steady_load)
    load.start()
    try:
        time.sleep(0.3)
        dead = rows(7)
        (tmp_path / "journal" / "predictions-deadhost-6-abc-1.jsonl").write_bytes(encode_rows(dead))
        deadline = time.monotonic() + 10
        while store.recovered_rows < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        load.join()
    store.stop()
    assert store.recovered_rows == 7
    assert all(LogReader(store.engine).prediction_exists(row["id"]) for row in dead)


def test_a_new_segment_is_locked_before_a_replayer_can_list_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl

    journal = Journal(tmp_path, "predictions")
    visible_when_locked: list[list[Path]] = []
    real_flock = fcntl.flock

    def watching_flock(fd: int, operation: int) -> None:
        visible_when_locked.append(segments(tmp_path))
        real_flock(fd, operation)

    monkeypatch.setattr("tagops.predlog.journal.fcntl.flock", watching_flock)
    journal.append(rows(1))
    assert visible_when_locked == [[]]  # locked while still under its hidden name
    assert len(segments(tmp_path)) == 1
    journal.close()


def test_a_hidden_segment_left_by_a_kill_before_its_rename_is_cleaned_up(tmp_path: Path) -> None:
    import os
    import time

    stale = tmp_path / ".predictions-gone-8-abc-1.jsonl.new"
    fresh = tmp_path / ".predictions-alive-9-abc-1.jsonl.new"
    stale.touch()
    fresh.touch()
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    assert list(Journal(tmp_path, "predictions").replayable()) == []
    assert not stale.exists()
    assert fresh.exists()  # may be a live process's, about to be renamed
