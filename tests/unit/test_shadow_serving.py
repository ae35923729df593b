"""Shadow scoring in the prediction API: off the request path, logged beside the champion, never returned."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from tagops.predlog.schema import predictions, shadow_predictions
from tests.unit.serving_fakes import FakePredictor, make_store, serve_app, serve_config, settings_for

pytestmark = pytest.mark.unit

ITEM = {"title": "BERT for text classification", "description": "language models"}
SHADOW_URI = "models:/tagops@challenger"


class SlowShadow(FakePredictor):
    """A shadow model that takes ``delay_s`` per batch, answers 'mlops' always, or raises when asked."""

    def __init__(self, version: int, *, delay_s: float = 0.0, fail: bool = False) -> None:
        super().__init__(version, delay_s=delay_s)
        self.fail = fail
        self.metadata["aliases"] = ["challenger"]

    def predict(self, titles: Sequence[str], descriptions: Sequence[str]) -> list[dict[str, Any]]:
        results = super().predict(titles, descriptions)
        if self.fail and titles != ["Warm-up request"]:
            raise RuntimeError("shadow model broke")
        return [{**r, "tag": "mlops"} for r in results]


class AliasLoader:
    """Resolves aliases to versions from a mutable map; loads shadow-like predictors for non-champions."""

    def __init__(self, aliases: dict[str, int], *, delay_s: float = 0.0, fail: bool = False) -> None:
        self.aliases = aliases
        self.delay_s = delay_s
        self.fail = fail
        self.loaded: list[str] = []

    def resolve(self, uri: str) -> str:
        if "@" in uri:
            return f"models:/tagops/{self.aliases[uri.rsplit('@', 1)[1]]}"
        return uri

    def load(self, uri: str) -> FakePredictor:
        self.loaded.append(uri)
        version = int(uri.rsplit("/", 1)[1])
        if version == self.aliases.get("champion"):
            return FakePredictor(version)
        return SlowShadow(version, delay_s=self.delay_s, fail=self.fail)


def build(home: Path, loader: AliasLoader, **overrides: Any) -> FastAPI:
    return serve_app(
        FakePredictor(1),
        settings_for(home),
        serve_config(shadow_model_uri=SHADOW_URI, **overrides),
        store=make_store(home, flush_interval_s=0.05),
        loader=loader,
    )


def rows(app: FastAPI, table: Any) -> list[Any]:
    service = app.state.service
    assert service.shadow is None or service.shadow.flush(20)
    assert service.store.writer.flush(10)
    with service.store.engine.connect() as connection:
        return list(connection.execute(select(table)))


def test_shadow_answers_are_logged_beside_the_champion_and_never_returned(tagops_home: Path) -> None:
    app = build(tagops_home, AliasLoader({"champion": 1, "challenger": 2}))
    with TestClient(app) as client:
        assert client.get("/v1/model").json()["shadow"]["version"] == 2
        sent = client.post("/v1/predict", json={"items": [ITEM, {"title": "YOLO image detection"}]}).json()
        assert sent["model"]["version"] == 1
        assert [p["tag"] for p in sent["predictions"]] == ["natural-language-processing", "computer-vision"]
        champion = rows(app, predictions)
        shadow = rows(app, shadow_predictions)
    ids = {p["prediction_id"] for p in sent["predictions"]}
    assert {r.id for r in champion} == ids
    assert {r.prediction_id for r in shadow} == ids
    assert {r.model_version for r in shadow} == {2} and {r.tag for r in shadow} == {"mlops"}
    assert all(r.model_uri == "models:/tagops/2" and r.latency_ms >= 0 for r in shadow)


def test_a_slow_shadow_does_not_delay_the_answer(tagops_home: Path) -> None:
    app = build(tagops_home, AliasLoader({"champion": 1, "challenger": 2}, delay_s=0.5))
    with TestClient(app) as client:
        client.post("/v1/predict", json={"items": [ITEM]})  # the shadow is busy with this one now
        started = time.perf_counter()
        response = client.post("/v1/predict", json={"items": [ITEM]})
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        assert elapsed < 0.4, f"the answer waited for the shadow ({elapsed:.2f}s)"
        assert len(rows(app, shadow_predictions)) == 2  # both copies scored, later


def test_a_failing_shadow_fails_no_request_and_loses_no_champion_row(tagops_home: Path) -> None:
    app = build(tagops_home, AliasLoader({"champion": 1, "challenger": 2}, fail=True))
    with TestClient(app) as client:
        answers = [client.post("/v1/predict", json={"items": [ITEM] * 3}) for _ in range(5)]
        assert {a.status_code for a in answers} == {200}
        assert len(rows(app, predictions)) == 15
        assert rows(app, shadow_predictions) == []
        assert app.state.service.shadow.failed_items == 15
        metrics = client.get("/metrics").text
    assert 'tagops_shadow_items_total{outcome="failed"} 15.0' in metrics


def test_a_full_shadow_queue_skips_copies_not_requests(tagops_home: Path) -> None:
    app = build(tagops_home, AliasLoader({"champion": 1, "challenger": 2}, delay_s=0.3), shadow_queue_items=4)
    with TestClient(app) as client:
        for _ in range(6):
            assert client.post("/v1/predict", json={"items": [ITEM] * 2}).status_code == 200
        shadow = app.state.service.shadow
        assert shadow.skipped_items > 0
        assert len(rows(app, predictions)) == 12  # every champion row written
        scored = len(rows(app, shadow_predictions))
    assert scored + shadow.skipped_items == 12 and scored == shadow.scored_items


def test_reload_follows_a_new_challenger_and_idles_when_it_becomes_champion(tagops_home: Path) -> None:
    loader = AliasLoader({"champion": 1, "challenger": 2})
    app = build(tagops_home, loader)
    with TestClient(app) as client:
        admin = {"Authorization": f"Bearer {app.state.service.keys.create('admin', 'admin')[1]}"}
        loader.aliases["challenger"] = 3
        body = client.post("/v1/admin/reload", headers=admin).json()
        assert body["changed"] is False and body["shadow"]["version"] == 3
        client.post("/v1/predict", json={"items": [ITEM]})
        assert {r.model_version for r in rows(app, shadow_predictions)} == {3}
        loader.aliases["champion"] = 3  # the challenger is promoted
        body = client.post("/v1/admin/reload", headers=admin).json()
        assert body["current"]["version"] == 3 and body["shadow"] is None
        client.post("/v1/predict", json={"items": [ITEM]})
        assert len(rows(app, shadow_predictions)) == 1  # nothing shadowed once challenger == champion


def test_no_shadow_configured_means_no_shadow_rows(tagops_home: Path) -> None:
    app = serve_app(
        FakePredictor(1),
        settings_for(tagops_home),
        serve_config(),
        store=make_store(tagops_home, flush_interval_s=0.05),
    )
    with TestClient(app) as client:
        client.post("/v1/predict", json={"items": [ITEM]})
        assert client.get("/v1/model").json()["shadow"] is None
        assert app.state.service.shadow is None
        assert rows(app, shadow_predictions) == []
