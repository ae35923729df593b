"""Canary rollout in the serving app: a weighted, sticky share of requests to the challenger, recorded per
row; abort and promotion lose no request; replicas of a deployment follow the rollout."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tagops.predlog.schema import predictions
from tests.unit.serving_fakes import (
    FakeLoader,
    FakePredictor,
    make_store,
    serve_app,
    serve_config,
    settings_for,
)

pytestmark = pytest.mark.unit


def admin(app: Any) -> dict[str, str]:
    _, token = app.state.service.keys.create("ops", "admin")
    return {"Authorization": f"Bearer {token}"}


def item(i: int) -> dict[str, Any]:
    return {"items": [{"title": f"Project {i}", "description": f"neural networks number {i}"}]}


def build(home: Path, **parts: Any) -> Any:
    predictor = parts.pop("predictor", FakePredictor(1))
    loader = parts.pop("loader", FakeLoader(2))
    return serve_app(
        predictor, settings_for(home), serve_config(), store=make_store(home), loader=loader, **parts
    )


def test_weight_10_routes_a_sticky_tenth_and_each_row_records_its_model(tagops_home: Path) -> None:
    app = build(tagops_home)
    with TestClient(app) as client:
        headers = admin(app)
        started = client.post("/v1/admin/rollout", json={"weight": 10}, headers=headers)
        assert started.status_code == 200, started.text
        assert started.json()["canary_version"] == 2 and started.json()["champion_version"] == 1
        info = client.get("/v1/model").json()
        assert info["canary"]["version"] == 2 and info["canary_weight"] == 10
        versions = [client.post("/v1/predict", json=item(i)).json()["model"]["version"] for i in range(2000)]
        share = versions.count(2) / len(versions)
        assert 0.07 <= share <= 0.13, share
        again = [client.post("/v1/predict", json=item(i)).json()["model"]["version"] for i in range(200)]
        assert again == versions[:200]  # sticky: the same request, the same model
        state = client.get("/v1/admin/rollout", headers=headers).json()
        assert state["canary_answered"] == versions.count(2) + again.count(2)
        assert state["champion_answered"] == versions.count(1) + again.count(1)
        assert state["canary_failed"] == state["champion_failed"] == 0
        assert "tagops_canary_weight_percent 10.0" in client.get("/metrics").text
    store = app.state.service.store
    with store.engine.connect() as connection:
        rows = list(connection.execute(select(predictions.c.model_version, predictions.c.model_uri)))
    assert sum(1 for r in rows if r.model_version == 2) == versions.count(2) + again.count(2)
    assert {r.model_uri for r in rows} == {"models:/tagops/1", "models:/tagops/2"}


def test_rollout_needs_an_admin_key_and_a_model_other_than_the_champion(tagops_home: Path) -> None:
    app = build(tagops_home)
    with TestClient(app) as client:
        assert client.post("/v1/admin/rollout", json={"weight": 10}).status_code == 401
        same = client.post(
            "/v1/admin/rollout", json={"model_uri": "models:/tagops/1", "weight": 10}, headers=admin(app)
        )
        assert same.status_code == 409 and "served model" in same.json()["detail"]
        bad = client.post("/v1/admin/rollout", json={"weight": 0}, headers=admin(app))
        assert bad.status_code == 422
        assert client.delete("/v1/admin/rollout", headers=admin(app)).status_code == 409


def _hammer(client: TestClient, stop: threading.Event, statuses: list[int], versions: list[int]) -> None:
    i = 0
    while not stop.is_set():
        response = client.post("/v1/predict", json=item(i))
        statuses.append(response.status_code)
        if response.status_code == 200:
            versions.append(response.json()["model"]["version"])
        i += 1


@pytest.mark.parametrize("end", ["abort", "promote"])
def test_abort_and_promotion_lose_no_request(tagops_home: Path, end: str) -> None:
    loader = FakeLoader(2, delay_s=0.2)
    app = build(tagops_home, predictor=FakePredictor(1, delay_s=0.002), loader=loader)
    statuses: list[int] = []
    versions: list[int] = []
    stop = threading.Event()
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = admin(app)
        workers = [
            threading.Thread(target=_hammer, args=(client, stop, statuses, versions)) for _ in range(6)
        ]
        for worker in workers:
            worker.start()
        try:
            assert client.post("/v1/admin/rollout", json={"weight": 50}, headers=headers).status_code == 200
            time.sleep(0.3)
            if end == "abort":
                ended = client.delete("/v1/admin/rollout", params={"reason": "latency"}, headers=headers)
                assert ended.status_code == 200 and ended.json()["state"] == "aborted"
                assert ended.json()["reason"] == "latency"
            else:
                # the registry's champion alias now names the canary's version; the reload reuses it
                reload = client.post("/v1/admin/reload", headers=headers)
                assert reload.status_code == 200 and reload.json()["current"]["version"] == 2
                state = client.get("/v1/admin/rollout", headers=headers).json()
                assert state["state"] == "promoted"
            time.sleep(0.2)
        finally:
            stop.set()
            for worker in workers:
                worker.join(10)
        after = {client.post("/v1/predict", json=item(i)).json()["model"]["version"] for i in range(50)}
        assert client.get("/v1/model").json()["canary"] is None
    assert statuses and set(statuses) == {200}
    assert {1, 2} <= set(versions)
    assert after == ({1} if end == "abort" else {2})
    assert loader.loaded == ["models:/tagops/2"]  # loaded once: a promotion reuses the warm canary


def test_a_second_replica_follows_the_rollout_and_its_end(tagops_home: Path) -> None:
    settings = settings_for(tagops_home)
    parts = {"store": make_store(tagops_home), "deployment_id": "d1"}
    first = serve_app(FakePredictor(1), settings, serve_config(), loader=FakeLoader(2), **parts)
    second = serve_app(
        FakePredictor(1),
        settings,
        serve_config(),
        loader=FakeLoader(2),
        store=make_store(tagops_home),
        deployment_id="d1",
    )
    with TestClient(first) as one, TestClient(second) as two:
        headers = admin(first)
        assert one.post("/v1/admin/rollout", json={"weight": 30}, headers=headers).status_code == 200
        deadline = time.monotonic() + 5
        while two.get("/v1/model").json()["canary"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert two.get("/v1/model").json()["canary_weight"] == 30
        versions = [two.post("/v1/predict", json=item(i)).json()["model"]["version"] for i in range(300)]
        assert 2 in versions
        assert one.delete("/v1/admin/rollout", headers=headers).status_code == 200
        deadline = time.monotonic() + 5
        while two.get("/v1/model").json()["canary"] is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert two.get("/v1/model").json()["canary"] is None
        # the second replica's own counts reach the shared row at its sync
        state = one.get("/v1/admin/rollout", headers=headers).json()
        assert state["canary_answered"] == versions.count(2)


def test_a_status_read_sees_the_counts_a_beat_is_still_writing(
    tagops_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build(tagops_home)
    service = app.state.service
    writing, release = threading.Event(), threading.Event()
    add_counts = service.state.add_rollout_counts

    def slow_add(deployment_id: str, counts: dict[str, int]) -> None:
        if any(counts.values()) and not writing.is_set():  # the first write of counts: held
            writing.set()
            release.wait(10)
        add_counts(deployment_id, counts)

    with TestClient(app) as client:
        headers = admin(app)
        assert client.post("/v1/admin/rollout", json={"weight": 50}, headers=headers).status_code == 200
        monkeypatch.setattr(service.state, "add_rollout_counts", slow_add)
        versions = [client.post("/v1/predict", json=item(i)).json()["model"]["version"] for i in range(100)]
        assert writing.wait(5), "the replica's beat did not write the counts"
        read: list[dict[str, Any]] = []
        reader = threading.Thread(
            target=lambda: read.append(client.get("/v1/admin/rollout", headers=headers).json())
        )
        reader.start()
        time.sleep(0.3)  # the read arrives while the beat's write is in flight
        release.set()
        reader.join(10)
    assert read and read[0]["canary_answered"] == versions.count(2) > 0
    assert read[0]["champion_answered"] == versions.count(1) > 0


def test_a_reload_to_another_champion_ends_the_rollout(tagops_home: Path) -> None:
    loader = FakeLoader(3)
    app = build(tagops_home, loader=loader)
    with TestClient(app) as client:
        headers = admin(app)
        started = client.post(
            "/v1/admin/rollout", json={"model_uri": "models:/tagops/2", "weight": 20}, headers=headers
        )
        assert started.status_code == 200, started.text
        assert client.post("/v1/admin/reload", headers=headers).json()["current"]["version"] == 3
        state = client.get("/v1/admin/rollout", headers=headers).json()
        assert state["state"] == "aborted" and "champion changed" in state["reason"]
        assert client.get("/v1/model").json()["canary"] is None
