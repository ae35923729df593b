"""The prediction log on PostgreSQL: the serving app's whole use of it (predictions, keys, trusted feedback
and its limits, a canary rollout's counts, retention and size), and the embedded SQLite log moved there
with every row (count and checksum).

Each module run gets a database of its own on the local PostgreSQL (127.0.0.1:5432, trust
authentication), dropped afterwards. Without a server the tests are skipped, except in CI, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tagops.predlog.log import PredictionLog
from tagops.predlog.writer import WriterOptions

pytestmark = pytest.mark.integration

SERVER = "postgresql://root@127.0.0.1:5432"


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    import psycopg

    try:
        admin = psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL at {SERVER} in CI: {error}")
        pytest.skip(f"no PostgreSQL at {SERVER}: {error}")
    name = f"tagops_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_the_serving_app_keeps_its_log_keys_feedback_and_rollouts_on_postgresql(
    pg_url: str, tmp_path: Path
) -> None:
    from tagops.predlog.feedback import feedback_to_rows
    from tagops.predlog.retention import RetentionPolicy
    from tests.unit.serving_fakes import FakeLoader, FakePredictor, serve_app, serve_config, settings_for
    from tests.unit.test_retrain_feedback import frames

    store = PredictionLog(pg_url, options=WriterOptions(flush_interval_s=0.05))
    app = serve_app(
        FakePredictor(1),
        settings_for(tmp_path / "home"),
        serve_config(feedback_limits={"client": {"per_minute": 2}}),
        store=store,
        loader=FakeLoader(2),
    )
    keys = app.state.service.keys
    with TestClient(app) as client:
        _, labeller = keys.create("ann", "labeller")
        _, user = keys.create("user", "client")
        _, admin = keys.create("ops", "admin")
        ids = []
        for i in range(60):
            body = {"items": [{"title": f"Wen tcejorp {i}", "description": "neural networks"}]}
            ids.append(client.post("/v1/predict", json=body).json()["predictions"][0]["prediction_id"])
        for prediction_id in ids[:20]:
            stored = client.post(
                "/v1/feedback",
                json={"prediction_id": prediction_id, "tag": "mlops"},
                headers={"Authorization": f"Bearer {labeller}"},
            )
            assert stored.status_code == 201, stored.text
        codes = [
            client.post(
                "/v1/feedback",
                json={"prediction_id": ids[30], "tag": "other"},
                headers={"Authorization": f"Bearer {user}"},
            ).status_code
            for _ in range(3)
        ]
        assert codes == [201, 201, 429]
        headers = {"Authorization": f"Bearer {admin}"}
        assert client.post("/v1/admin/rollout", json={"weight": 50}, headers=headers).status_code == 200
        versions = [
            client.post("/v1/predict", json={"items": [{"title": f"Rollout {i}"}]}).json()["model"]["version"]
            for i in range(200)
        ]
        state = client.get("/v1/admin/rollout", headers=headers).json()
        assert state["canary_answered"] == versions.count(2) > 0
        assert state["champion_answered"] == versions.count(1) > 0
        assert client.delete("/v1/admin/rollout", headers=headers).json()["state"] == "aborted"
    from tagops.predlog.schema import schema_revision

    assert schema_revision(store.engine) == "0002"  # made by the migrations, as on SQLite
    reader = store.reader
    assert reader.count_predictions() == 260
    dataset, holdout = frames()
    rows = feedback_to_rows(reader.read_labelled(), dataset, holdout, recent_fraction=0.3)
    assert rows.counts["pending_review"] == 2 and rows.counts["train"] + rows.counts["recent"] == 20
    pruned = store.prune(RetentionPolicy(max_age_days=None, max_rows=10))
    # the newest 10 stay, and so does every prediction with feedback (20 labeller's, 1 client's)
    assert pruned.predictions == 260 - 10 - 21
    assert reader.count_predictions() == 31
    size = store.measure()
    assert size.predictions == reader.count_predictions() and size.bytes and size.bytes > 0
    store.dispose()


def test_the_embedded_log_moves_to_postgresql_with_every_row(pg_url: str, tmp_path: Path) -> None:
    from tagops.predlog.engine import create_log_engine
    from tagops.predlog.migrate import TABLES, migrate_log, table_digest
    from tests.unit.test_predlog_migrate import filled_log

    source = filled_log(f"sqlite:///{tmp_path / 'embedded.db'}", rows=5000)
    target = create_log_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with target.begin() as connection:  # the serving test's rows: start from an empty log
        for table in reversed(TABLES):
            connection.execute(table.delete())
    summary = migrate_log(source.engine, target, batch_rows=1000)
    assert summary["predictions"] == {
        "rows": 5000,
        "copied": 5000,
        "already": 0,
        "sha256": table_digest(target, TABLES[1])[1],
    }
    for table in TABLES:
        assert table_digest(source.engine, table) == table_digest(target, table), table.name
    again = migrate_log(source.engine, target)
    assert all(s["copied"] == 0 for s in again.values())
    source.dispose()
    target.dispose()
