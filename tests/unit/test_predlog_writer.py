"""The prediction log's background writer: batching, flushes, drops, retries, on SQLite."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.unit.serving_fakes import make_store

pytestmark = pytest.mark.unit


def rows(count: int, *, tag: str = "mlops") -> list[dict[str, Any]]:
    from tagops.predlog.schema import utcnow

    return [
        {
            "id": uuid.uuid4().hex,
            "created_at": utcnow(),
            "request_id": "r",
            "model_name": "tagops",
            "model_version": 1,
            "model_uri": "models:/tagops/1",
            "title": "t",
            "description": "d",
            "tag": tag,
            "confidence": 0.9,
            "abstained": False,
            "probabilities": {tag: 0.9},
            "latency_ms": 1.5,
            "replica": "r1",
        }
        for _ in range(count)
    ]


def test_concurrent_writers_lose_no_row(tmp_path: Path) -> None:
    events: list[tuple[str, int]] = []
    log = make_store(
        tmp_path, batch_rows=300, flush_interval_s=0.01, on_rows=lambda o, n: events.append((o, n))
    )
    store = log.writer
    store.start()
    threads = [
        threading.Thread(target=lambda: [store.submit(rows(5)) for _ in range(100)]) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.stop()
    assert log.reader.count_predictions() == 10_000
    assert (store.written_rows, store.dropped_rows, store.failed_rows) == (10_000, 0, 0)
    assert sum(n for outcome, n in events if outcome == "written") == 10_000
    assert max(n for _, n in events) > 5  # inserts were batched


def test_rows_within_the_flush_interval_share_one_transaction(tmp_path: Path) -> None:
    # One request at a time must not cost a commit each: the writer waits up to flush_interval_s after
    # the first row for more.
    events: list[tuple[str, int]] = []
    log = make_store(tmp_path, flush_interval_s=1.0, on_rows=lambda o, n: events.append((o, n)))
    store = log.writer
    store.start()
    for _ in range(10):
        store.submit(rows(1))
    assert store.flush(10)
    assert events == [("written", 10)]
    assert log.reader.count_predictions() == 10
    store.stop()


def test_rows_queued_during_the_flush_interval_do_not_wake_the_writer(tmp_path: Path) -> None:
    # A writer waiting on the queue is woken by every put and takes the GIL from the request path each
    # time; it sleeps through the interval instead and then takes what queued.
    log = make_store(tmp_path, flush_interval_s=1.0)
    store = log.writer
    store.start()
    store.submit(rows(1))  # starts the interval
    deadline = time.monotonic() + 5
    while store._queue.qsize() and time.monotonic() < deadline:  # the first row is taken at once
        time.sleep(0.005)
    for _ in range(5):
        store.submit(rows(1))
    time.sleep(0.2)
    assert store._queue.qsize() == 5  # still queued: nobody took them one by one
    assert store.flush(10)
    assert log.reader.count_predictions() == 6
    store.stop()


def test_a_full_batch_is_written_without_waiting_for_the_interval(tmp_path: Path) -> None:
    log = make_store(tmp_path, flush_interval_s=5.0, batch_rows=10)
    store = log.writer
    store.start()
    for _ in range(3):
        store.submit(rows(10))
    deadline = time.monotonic() + 2.0
    while log.reader.count_predictions() < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.reader.count_predictions() == 30  # three full batches, not one per 5 s interval
    store.stop()


def test_stop_writes_everything_queued(tmp_path: Path) -> None:
    log = make_store(tmp_path, flush_interval_s=5.0)
    store = log.writer
    store.start()
    for _ in range(50):
        store.submit(rows(2))
    store.stop()
    assert log.reader.count_predictions() == 100
    assert store.pending_rows == 0


def test_full_queue_drops_are_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = make_store(tmp_path, queue_rows=10)  # never started: nothing drains the queue
    store = log.writer
    store.create_tables()
    assert store.submit(rows(8)) is True
    assert store.submit(rows(5)) is False
    assert store.dropped_rows == 5
    assert "dropped 5 rows (queue full" in caplog.text
    store.stop()
    assert store.dropped_rows == 13  # the 8 never written are reported at shutdown too


def test_submit_after_stop_is_refused_not_lost_silently(tmp_path: Path) -> None:
    log = make_store(tmp_path)
    store = log.writer
    store.start()
    store.stop()
    assert store.submit(rows(3)) is False
    assert store.dropped_rows == 3


def test_database_failures_are_retried_then_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = make_store(tmp_path, flush_interval_s=0.01, retries=2)
    store = log.writer
    store.start()
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE predictions"))
    store.submit(rows(4))
    assert store.flush(10)
    assert store.failed_rows == 4
    assert "4 rows not written after 2 attempts" in caplog.text
    from tagops.predlog.schema import predictions

    predictions.create(store.engine)  # the table is back: later rows are written
    store.submit(rows(2))
    store.stop()
    assert log.reader.count_predictions() == 2


def test_duplicate_ids_fail_only_once_without_retries(tmp_path: Path) -> None:
    log = make_store(tmp_path, flush_interval_s=0.01)
    store = log.writer
    store.start()
    batch = rows(1)
    store.submit(batch)
    assert store.flush(10)
    store.submit(batch)
    store.stop()
    assert (store.written_rows, store.failed_rows) == (1, 1)


def test_flush_writes_now_rather_than_after_the_flush_interval(tmp_path: Path) -> None:
    log = make_store(tmp_path, flush_interval_s=5.0)
    store = log.writer
    store.start()
    store.submit(rows(3))
    started = time.monotonic()
    assert store.flush(10)
    assert time.monotonic() - started < 2.0  # not the 5 s the writer would wait for more rows
    assert log.reader.count_predictions() == 3
    store.submit(rows(2))  # the writer goes on batching afterwards
    assert store.flush(10)
    assert log.reader.count_predictions() == 5
    store.stop()
