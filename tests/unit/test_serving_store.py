"""The prediction log (background writer), API keys and the replica bookkeeping, on SQLite."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from tagops.predlog.store import (
    ServingStore,
    api_keys,
    database_url_for,
    default_database_url,
    safe_url,
)
from tagops.serving.keys import ApiKeyError, KeyStore
from tests.unit.serving_fakes import make_store, settings_for

pytestmark = pytest.mark.unit


def rows(count: int, *, tag: str = "mlops") -> list[dict[str, Any]]:
    from tagops.predlog.store import utcnow

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
    store = make_store(
        tmp_path, batch_rows=300, flush_interval_s=0.01, on_rows=lambda o, n: events.append((o, n))
    )
    store.start()
    threads = [
        threading.Thread(target=lambda: [store.submit(rows(5)) for _ in range(100)]) for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.stop()
    assert store.count_predictions() == 10_000
    assert (store.written_rows, store.dropped_rows, store.failed_rows) == (10_000, 0, 0)
    assert sum(n for outcome, n in events if outcome == "written") == 10_000
    assert max(n for _, n in events) > 5  # inserts were batched


def test_rows_within_the_flush_interval_share_one_transaction(tmp_path: Path) -> None:
    # One request at a time must not cost a commit each: the writer waits up to flush_interval_s after
    # the first row for more.
    events: list[tuple[str, int]] = []
    store = make_store(tmp_path, flush_interval_s=1.0, on_rows=lambda o, n: events.append((o, n)))
    store.start()
    for _ in range(10):
        store.submit(rows(1))
    assert store.flush(10)
    assert events == [("written", 10)]
    assert store.count_predictions() == 10
    store.stop()


def test_rows_queued_during_the_flush_interval_do_not_wake_the_writer(tmp_path: Path) -> None:
    # A writer waiting on the queue is woken by every put and takes the GIL from the request path each
    # time; it sleeps through the interval instead and then takes what queued.
    store = make_store(tmp_path, flush_interval_s=1.0)
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
    assert store.count_predictions() == 6
    store.stop()


def test_a_full_batch_is_written_without_waiting_for_the_interval(tmp_path: Path) -> None:
    store = make_store(tmp_path, flush_interval_s=5.0, batch_rows=10)
    store.start()
    for _ in range(3):
        store.submit(rows(10))
    deadline = time.monotonic() + 2.0
    while store.count_predictions() < 30 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.count_predictions() == 30  # three full batches, not one per 5 s interval
    store.stop()


def test_stop_writes_everything_queued(tmp_path: Path) -> None:
    store = make_store(tmp_path, flush_interval_s=5.0)
    store.start()
    for _ in range(50):
        store.submit(rows(2))
    store.stop()
    assert store.count_predictions() == 100
    assert store.pending_rows == 0


def test_full_queue_drops_are_counted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = make_store(tmp_path, queue_rows=10)  # never started: nothing drains the queue
    store.create_tables()
    assert store.submit(rows(8)) is True
    assert store.submit(rows(5)) is False
    assert store.dropped_rows == 5
    assert "dropped 5 rows (queue full" in caplog.text
    store.stop()
    assert store.dropped_rows == 13  # the 8 never written are reported at shutdown too


def test_submit_after_stop_is_refused_not_lost_silently(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.start()
    store.stop()
    assert store.submit(rows(3)) is False
    assert store.dropped_rows == 3


def test_database_failures_are_retried_then_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = make_store(tmp_path, flush_interval_s=0.01, retries=2)
    store.start()
    with store.engine.begin() as connection:
        connection.execute(text("DROP TABLE predictions"))
    store.submit(rows(4))
    assert store.flush(10)
    assert store.failed_rows == 4
    assert "4 rows not written after 2 attempts" in caplog.text
    store.create_tables()  # the database is back: later rows are written
    store.submit(rows(2))
    store.stop()
    assert store.count_predictions() == 2


def test_duplicate_ids_fail_only_once_without_retries(tmp_path: Path) -> None:
    store = make_store(tmp_path, flush_interval_s=0.01)
    store.start()
    batch = rows(1)
    store.submit(batch)
    assert store.flush(10)
    store.submit(batch)
    store.stop()
    assert (store.written_rows, store.failed_rows) == (1, 1)


def test_in_memory_and_default_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ServingStore("sqlite://")
    store.start()
    store.submit(rows(3))
    store.stop()
    assert store.count_predictions() == 3
    settings = settings_for(tmp_path)
    assert default_database_url(settings) == f"sqlite:///{tmp_path.resolve() / 'serving' / 'predictions.db'}"
    assert database_url_for(None, settings) == default_database_url(settings)
    assert database_url_for("sqlite:///x.db", settings) == "sqlite:///x.db"
    monkeypatch.setenv("TAGOPS_SERVE_DATABASE_URL", "postgresql://u:secret@db/tagops")
    assert database_url_for("sqlite:///x.db", settings) == "postgresql://u:secret@db/tagops"
    assert "secret" not in safe_url("postgresql://u:secret@db/tagops")


def test_replica_targets_and_heartbeats(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.create_tables()
    assert store.claim_target("d", "models:/tagops/1", 1) == ("models:/tagops/1", 1)
    assert store.claim_target("d", "models:/tagops/5", 5) == ("models:/tagops/1", 1)  # first claim wins
    store.set_target("d", "models:/tagops/2", 2)
    assert store.get_target("d") == ("models:/tagops/2", 2)
    store.heartbeat("r1", "d", "models:/tagops/2", 2)
    store.heartbeat("r2", "d", "models:/tagops/1", 1)
    store.heartbeat("r3", "other", "models:/tagops/1", 1)
    assert sorted(r.replica_id for r in store.live_replicas("d", 10)) == ["r1", "r2"]
    store.remove_replica("r2")
    assert [r.model_version for r in store.live_replicas("d", 10)] == [2]
    assert store.live_replicas("d", -1) == []  # stale


# ---------------------------------------------------------------------------------------------- keys
def test_keys_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.create_tables()
    keys = KeyStore(store.engine, cache_ttl_s=0)
    record, token = keys.create("ci", "client")
    assert token.startswith(f"tagops_{record.key_id}_")
    with store.engine.connect() as connection:
        stored = connection.execute(select(api_keys)).one()
    secret = token.split("_", 2)[2]
    assert secret not in str(tuple(stored)) and token not in str(tuple(stored))
    assert len(stored.salt) == 32 and len(stored.digest) == 64
    assert keys.verify(token) == record
    assert keys.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert keys.verify("tagops_000000000000_" + "x" * 43) is None
    assert keys.verify("not a key") is None
    assert record.allows("client") and not record.allows("admin")
    admin, admin_token = keys.create("ops", "admin")
    assert admin.allows("client") and admin.allows("admin")
    assert [k.name for k in keys.list()] == ["ci", "ops"]
    keys.revoke(record.key_id)
    assert keys.verify(token) is None
    assert keys.verify(admin_token) is not None
    with pytest.raises(ApiKeyError, match="no API key"):
        keys.revoke("nope")
    with pytest.raises(ApiKeyError, match="role"):
        keys.create("x", "root")  # type: ignore[arg-type]
    with pytest.raises(ApiKeyError, match="name"):
        keys.create("  ", "client")


def test_verified_keys_are_cached_until_the_ttl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path)
    store.create_tables()
    keys = KeyStore(store.engine, cache_ttl_s=60)
    _, token = keys.create("ci")
    assert keys.verify(token) is not None
    calls = []
    monkeypatch.setattr("tagops.serving.keys.digest_secret", lambda *a: calls.append(a) or "")
    assert keys.verify(token) is not None  # from the cache: no scrypt
    assert calls == []


# ----------------------------------------------------------------------------------- model cache
def test_registry_versions_load_from_the_local_cache_without_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tagops.config import RulesParams
    from tagops.data.clean import build_text
    from tagops.inference.predictor import Predictor
    from tagops.models.rules import RulesModel
    from tagops.serving.loader import SERVING_METADATA, RegistryModelLoader
    from tests.unit.conftest import make_projects

    settings = settings_for(tmp_path)
    folder = settings.models_dir / "registry" / "tagops" / "3" / "model"
    frame = make_projects(8)
    texts = [build_text(t, d) for t, d in zip(frame.title, frame.description, strict=True)]
    RulesModel(RulesParams(min_term_count=2)).fit(texts, frame.tag.tolist()).save(folder)
    metadata = {"name": "tagops", "version": 3, "run_id": "r3", "holdout_metrics": {"overall.f1": 0.9}}
    calls: list[str] = []

    def from_registry(uri: str, _settings: object, *, threshold: float | None) -> Predictor:
        calls.append(uri)
        return Predictor.from_directory(folder, threshold=threshold, metadata=dict(metadata))

    monkeypatch.setattr("tagops.inference.loading.load_predictor", from_registry)
    monkeypatch.setattr(RegistryModelLoader, "_holdout_metrics", lambda self, run_id: {"overall.f1": 0.9})
    loader = RegistryModelLoader(settings, threshold=0.4)
    first = loader.load("models:/tagops@champion")
    assert calls == ["models:/tagops@champion"]
    assert (folder.parent / SERVING_METADATA).is_file()
    again = loader.load("models:/tagops/3")
    assert calls == ["models:/tagops@champion"]  # from the cache
    assert again.metadata["run_id"] == "r3" and again.metadata["holdout_metrics"] == {"overall.f1": 0.9}
    assert again.metadata["uri"] == "models:/tagops/3"
    assert again.predict(["image segmentation"], [""]) == first.predict(["image segmentation"], [""])
    assert loader.load("models:/tagops/4") is not None and calls[-1] == "models:/tagops/4"  # not cached


def test_flush_writes_now_rather_than_after_the_flush_interval(tmp_path: Path) -> None:
    store = make_store(tmp_path, flush_interval_s=5.0)
    store.start()
    store.submit(rows(3))
    started = time.monotonic()
    assert store.flush(10)
    assert time.monotonic() - started < 2.0  # not the 5 s the writer would wait for more rows
    assert store.count_predictions() == 3
    store.submit(rows(2))  # the writer goes on batching afterwards
    assert store.flush(10)
    assert store.count_predictions() == 5
    store.stop()


def test_a_missing_database_driver_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tagops.errors import TagopsError

    def no_driver(*_: Any, **__: Any) -> Any:
        raise ModuleNotFoundError("No module named 'psycopg2'", name="psycopg2")

    monkeypatch.setattr("tagops.predlog.store.create_engine", no_driver)
    with pytest.raises(
        TagopsError, match=r"u:\*\*\*@db/x: its database driver is not installed \(psycopg2\)"
    ):
        ServingStore("postgresql://u:secret@db/x")
    monkeypatch.undo()
    with pytest.raises(TagopsError, match=r"nonsense://x: Can.t load plugin"):
        ServingStore("nonsense://x")
