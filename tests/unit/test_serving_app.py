"""The prediction API with a fake predictor: endpoints, bounds, keys, errors, reload, log and metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from tagops.predlog.schema import feedback, predictions
from tests.unit.serving_fakes import (
    FakeLoader,
    FakePredictor,
    make_store,
    serve_app,
    serve_config,
    settings_for,
)

pytestmark = pytest.mark.unit

ITEM = {"title": "BERT for text classification", "description": "language models"}


def build(home: Path, **overrides: Any) -> tuple[FastAPI, FakePredictor, FakeLoader]:
    predictor, loader = FakePredictor(1), FakeLoader(2)
    app = serve_app(
        predictor,
        settings_for(home),
        serve_config(**overrides),
        store=make_store(home, flush_interval_s=0.05),
        loader=loader,
    )
    return app, predictor, loader


@pytest.fixture
def served(tagops_home: Path) -> Iterator[tuple[TestClient, FastAPI, FakePredictor, FakeLoader]]:
    app, predictor, loader = build(tagops_home)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, app, predictor, loader


def key(app: FastAPI, role: str = "client") -> dict[str, str]:
    _, token = app.state.service.keys.create(f"test {role}", role)
    return {"Authorization": f"Bearer {token}"}


def log_rows(app: FastAPI) -> list[Any]:
    store = app.state.service.store
    assert store.writer.flush(10)
    with store.engine.connect() as connection:
        return list(connection.execute(select(predictions)))


# ------------------------------------------------------------------------------------------- health
def test_health_and_readiness(served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader]) -> None:
    client, _, predictor, _ = served
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["detail"] == "models:/tagops/1"
    assert predictor.calls[0] == 1  # warmed before ready


def test_not_ready_before_start_up(tagops_home: Path) -> None:
    app, _, _ = build(tagops_home)
    client = TestClient(app)  # no lifespan: nothing started
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "not ready"


# ------------------------------------------------------------------------------------------ predict
def test_predict_answers_every_item_in_order(
    served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader],
) -> None:
    client, _, _, _ = served
    items = [ITEM, {"title": "YOLO image detection"}, {"title": "Docker deployment", "description": ""}]
    response = client.post("/v1/predict", json={"items": items})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "tagops", "version": 1, "alias": "champion", "family": "fake"}
    tags = [p["tag"] for p in body["predictions"]]
    assert tags == ["natural-language-processing", "computer-vision", "mlops"]
    ids = [p["prediction_id"] for p in body["predictions"]]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    first = body["predictions"][0]
    assert set(first) == {"prediction_id", "tag", "confidence", "abstained", "probabilities"}
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-4
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_low_confidence_abstains_to_other(
    served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader],
) -> None:
    client, _, _, _ = served
    result = client.post("/v1/predict", json={"items": [{"title": "graph neural networks"}]}).json()
    prediction = result["predictions"][0]
    assert prediction["abstained"] is True
    assert prediction["tag"] == "other"
    assert prediction["confidence"] < 0.5


def test_every_prediction_is_logged_with_model_inputs_outputs_latency(
    served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader],
) -> None:
    client, app, _, _ = served
    sent = client.post(
        "/v1/predict", json={"items": [ITEM, {"title": "YOLO"}]}, headers={"X-Request-ID": "req-42"}
    ).json()
    rows = {row.id: row for row in log_rows(app)}
    assert set(rows) == {p["prediction_id"] for p in sent["predictions"]}
    row = rows[sent["predictions"][0]["prediction_id"]]
    assert (row.title, row.description) == (ITEM["title"], ITEM["description"])
    assert row.tag == "natural-language-processing"
    assert row.model_version == 1 and row.model_uri == "models:/tagops/1"
    assert row.request_id == "req-42"
    assert row.latency_ms > 0
    assert row.probabilities == sent["predictions"][0]["probabilities"]


def test_concurrent_requests_are_batched_into_one_predict_call(tagops_home: Path) -> None:
    predictor = FakePredictor(1, delay_s=0.05)
    app = serve_app(predictor, settings_for(tagops_home), serve_config(), store=make_store(tagops_home))
    with TestClient(app) as client, ThreadPoolExecutor(16) as pool:
        responses = list(
            pool.map(
                lambda i: client.post("/v1/predict", json={"items": [{"title": f"text {i}"}] * 2}), range(32)
            )
        )
        assert all(r.status_code == 200 for r in responses)
        calls = predictor.calls[1:]  # after the warm-up
        assert sum(calls) == 64
        assert max(calls) > 2, f"no batching: {calls}"
        assert max(calls) <= app.state.service.config.max_batch_size
        assert len(log_rows(app)) == 64


def test_a_failing_item_fails_only_its_request_and_leaks_nothing(tagops_home: Path) -> None:
    predictor = FakePredictor(1, delay_s=0.02)
    app = serve_app(predictor, settings_for(tagops_home), serve_config(), store=make_store(tagops_home))
    with TestClient(app, raise_server_exceptions=False) as client, ThreadPoolExecutor(8) as pool:
        titles = ["explode now" if i == 3 else f"text {i}" for i in range(8)]
        responses = list(
            pool.map(lambda t: client.post("/v1/predict", json={"items": [{"title": t}]}), titles)
        )
    statuses = [r.status_code for r in responses]
    assert statuses[3] == 500
    assert statuses.count(200) == 7
    body = responses[3].json()
    assert "secret internal detail" not in responses[3].text
    assert "Traceback" not in responses[3].text
    assert body["detail"].startswith("prediction failed")


def test_unhandled_errors_answer_json_without_a_trace(
    served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, app, _, _ = served

    def broken(*_: Any, **__: Any) -> bool:
        raise ValueError("password=hunter2 in a stack frame")

    monkeypatch.setattr(app.state.service, "log_predictions", broken)
    response = client.post("/v1/predict", json={"items": [ITEM]})
    assert response.status_code == 500
    assert response.json()["detail"] == "internal server error"
    assert "hunter2" not in response.text and "Traceback" not in response.text


# ------------------------------------------------------------------------------------------- bounds
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [ITEM] * 9}, "items"),
        ({"items": [{"title": "x" * 201}]}, "items[0].title"),
        ({"items": [ITEM, {"title": "ok", "description": "y" * 201}]}, "items[1].description"),
        ({"items": [{"title": ""}]}, "items[0].title"),
        ({"items": [{"description": "no title"}]}, "items[0].title"),
        ({"items": [{"title": "a", "tags": "extra"}]}, "items[0].tags"),
        ({"items": [{"title": "nul \x00 byte"}]}, "items[0].title"),
        ({"items": [{"title": 5}]}, "items[0].title"),
        ({"item": [ITEM]}, "items"),
    ],
)
def test_invalid_requests_are_422_naming_the_field(tagops_home: Path, body: Any, field: str) -> None:
    app, _, _ = build(tagops_home, max_items=8, max_text_length=200)
    with TestClient(app) as client:
        response = client.post("/v1/predict", json=body)
    assert response.status_code == 422, response.text
    fields = [error["field"] for error in response.json()["detail"]]
    assert field in fields
    assert "x" * 201 not in response.text  # inputs are not echoed


def test_lone_surrogates_and_bad_json_are_422(tagops_home: Path) -> None:
    app, _, _ = build(tagops_home)
    with TestClient(app) as client:
        surrogate = client.post(
            "/v1/predict",
            content=b'{"items": [{"title": "a\\ud800b"}]}',
            headers={"content-type": "application/json"},
        )
        broken = client.post(
            "/v1/predict", content=b'{"items": [', headers={"content-type": "application/json"}
        )
    assert surrogate.status_code == 422
    assert surrogate.json()["detail"][0]["field"] == "items[0].title"
    assert broken.status_code == 422


def test_json_sent_as_a_form_or_text_is_415_naming_the_content_type(tagops_home: Path) -> None:
    app, _, _ = build(tagops_home)
    body = json.dumps({"items": [ITEM]}).encode()
    sent = {
        "application/x-www-form-urlencoded": "application/x-www-form-urlencoded",  # curl -d without -H
        "text/plain; charset=utf-8": "text/plain",
        None: "no Content-Type",
    }
    with TestClient(app) as client:
        for media, named in sent.items():
            headers = {} if media is None else {"content-type": media}
            answer = client.post("/v1/predict", content=body, headers=headers)
            assert answer.status_code == 415, answer.text
            assert answer.json()["detail"] == (
                f"send the body as JSON with Content-Type: application/json (got {named})"
            )
        typed = client.post(
            "/v1/predict", content=body, headers={"content-type": "application/json; charset=utf-8"}
        )
    assert typed.status_code == 200, typed.text


def test_oversized_bodies_are_413_before_parsing(tagops_home: Path) -> None:
    app, predictor, _ = build(tagops_home, max_body_bytes=2048)
    big = json.dumps({"items": [{"title": "x" * 4000}]}).encode()
    with TestClient(app) as client:
        declared = client.post("/v1/predict", content=big, headers={"content-type": "application/json"})
        streamed = client.post(
            "/v1/predict",
            content=iter([big[:1500], big[1500:]]),  # chunked: no content-length to trust
            headers={"content-type": "application/json"},
        )
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "max_body_bytes" in response.json()["detail"]
    assert predictor.calls == [1]  # only the warm-up ran


def test_the_openapi_schema_shows_the_bounds(tagops_home: Path) -> None:
    app, _, _ = build(tagops_home, max_items=8, max_text_length=200)
    with TestClient(app) as client:
        schema = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    components = schema["components"]["schemas"]
    assert components["PredictRequest"]["properties"]["items"]["maxItems"] == 8
    assert components["PredictItem"]["properties"]["title"]["maxLength"] == 200
    assert {
        "/healthz",
        "/readyz",
        "/v1/model",
        "/v1/predict",
        "/v1/feedback",
        "/v1/admin/reload",
        "/metrics",
    } <= set(schema["paths"])


# ---------------------------------------------------------------------------------------------- keys
def test_predict_can_require_a_key(tagops_home: Path) -> None:
    app, _, _ = build(tagops_home, require_key_for_predict=True)
    with TestClient(app) as client:
        assert client.post("/v1/predict", json={"items": [ITEM]}).status_code == 401
        response = client.post("/v1/predict", json={"items": [ITEM]}, headers=key(app))
        assert response.status_code == 200


def test_feedback_needs_a_valid_key_and_a_known_prediction(
    served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader],
) -> None:
    client, app, _, _ = served
    prediction_id = client.post("/v1/predict", json={"items": [ITEM]}).json()["predictions"][0][
        "prediction_id"
    ]
    body = {"prediction_id": prediction_id, "tag": "mlops"}
    missing = client.post("/v1/feedback", json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert client.post("/v1/feedback", json=body, headers={"X-API-Key": "tagops_nope"}).status_code == 401
    headers = key(app)
    stored = client.post("/v1/feedback", json=body, headers=headers)
    assert stored.status_code == 201, stored.text
    assert stored.json()["prediction_id"] == prediction_id
    with app.state.service.store.engine.connect() as connection:
        rows = list(connection.execute(select(feedback)))
    assert [(r.prediction_id, r.tag) for r in rows] == [(prediction_id, "mlops")]
    unknown = client.post("/v1/feedback", json={"prediction_id": "0" * 32, "tag": "mlops"}, headers=headers)
    assert unknown.status_code == 404
    assert "prediction_id" in unknown.json()["detail"]
    bad_tag = client.post(
        "/v1/feedback", json={"prediction_id": prediction_id, "tag": "vision"}, headers=headers
    )
    assert bad_tag.status_code == 422
    assert bad_tag.json()["detail"][0]["field"] == "tag"
    bad_id = client.post("/v1/feedback", json={"prediction_id": "../etc", "tag": "mlops"}, headers=headers)
    assert bad_id.status_code == 422


def test_feedback_says_whether_it_waits_for_review_and_a_labeller_may_not_reload(
    served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader],
) -> None:
    client, app, _, loader = served
    prediction_id = client.post("/v1/predict", json={"items": [ITEM]}).json()["predictions"][0][
        "prediction_id"
    ]
    body = {"prediction_id": prediction_id, "tag": "mlops"}
    statuses = {
        role: client.post("/v1/feedback", json=body, headers=key(app, role)).json()["status"]
        for role in ("client", "labeller", "admin")
    }
    assert statuses == {"client": "pending_review", "labeller": "trusted", "admin": "trusted"}
    assert client.post("/v1/admin/reload", headers=key(app, "labeller")).status_code == 403
    assert loader.loaded == []
    metrics = client.get("/metrics").text
    assert 'tagops_feedback_total{role="client",status="pending_review"} 1.0' in metrics


def test_feedback_past_a_keys_rate_or_daily_cap_is_429_with_retry_after(tagops_home: Path) -> None:
    app, _, _ = build(
        tagops_home,
        feedback_limits={"client": {"per_minute": 3}, "labeller": {"per_day": 2}},
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        prediction_id = client.post("/v1/predict", json={"items": [ITEM]}).json()["predictions"][0][
            "prediction_id"
        ]
        body = {"prediction_id": prediction_id, "tag": "mlops"}
        sender, other = key(app, "client"), key(app, "client")
        codes = [client.post("/v1/feedback", json=body, headers=sender).status_code for _ in range(5)]
        assert codes == [201, 201, 201, 429, 429]  # a burst of per_minute, then refused
        refused = client.post("/v1/feedback", json=body, headers=sender)
        assert 1 <= int(refused.headers["retry-after"]) <= 20
        assert "3 per minute" in refused.json()["detail"]
        assert client.post("/v1/feedback", json=body, headers=other).status_code == 201  # per key
        labeller = key(app, "labeller")
        codes = [client.post("/v1/feedback", json=body, headers=labeller).status_code for _ in range(3)]
        assert codes == [201, 201, 429]
        capped = client.post("/v1/feedback", json=body, headers=labeller)
        assert "2 per day" in capped.json()["detail"]
        assert 1 <= int(capped.headers["retry-after"]) <= 86_400
        assert client.post("/v1/feedback", json=body, headers=key(app, "admin")).status_code == 201
        assert 'tagops_feedback_refused_total{role="client"} 3.0' in client.get("/metrics").text
    with app.state.service.store.engine.connect() as connection:
        assert len(list(connection.execute(select(feedback)))) == 3 + 1 + 2 + 1  # refused ones not stored


def test_revoked_keys_stop_working(served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader]) -> None:
    client, app, _, _ = served
    record, token = app.state.service.keys.create("temporary", "admin")
    headers = {"X-API-Key": token}
    assert client.post("/v1/admin/reload", headers=headers).status_code == 200
    app.state.service.keys.revoke(record.key_id)
    assert client.post("/v1/admin/reload", headers=headers).status_code == 401


# -------------------------------------------------------------------------------------------- reload
def test_reload_needs_an_admin_key(served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader]) -> None:
    client, app, _, loader = served
    assert client.post("/v1/admin/reload").status_code == 401
    assert client.post("/v1/admin/reload", headers=key(app, "client")).status_code == 403
    assert loader.loaded == []


def test_reload_switches_model_and_reports_it(
    served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader],
) -> None:
    client, app, _, loader = served
    response = client.post("/v1/admin/reload", headers=key(app, "admin"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["previous"]["version"] == 1 and body["current"]["version"] == 2
    assert body["changed"] is True
    assert body["sync"] == {"replicas": 1, "on_version": 1}
    assert loader.loaded == ["models:/tagops/2"]
    assert client.get("/v1/model").json()["version"] == 2
    assert client.post("/v1/predict", json={"items": [ITEM]}).json()["model"]["version"] == 2
    gauge = next(line for line in client.get("/metrics").text.splitlines() if "tagops_model_version{" in line)
    assert gauge.endswith(" 2.0")


def test_reload_without_a_new_version_loads_nothing(
    served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader],
) -> None:
    client, app, _, loader = served
    headers = key(app, "admin")
    assert client.post("/v1/admin/reload", headers=headers).json()["changed"] is True
    again = client.post("/v1/admin/reload", headers=headers).json()
    assert again["changed"] is False
    assert again["previous"] == again["current"]
    assert loader.loaded == ["models:/tagops/2"]


def test_failed_reload_keeps_serving_the_old_model(
    served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader],
) -> None:
    client, app, _, loader = served
    loader.fail = True
    response = client.post("/v1/admin/reload", headers=key(app, "admin"))
    assert response.status_code == 503
    assert "still serving models:/tagops/1" in response.json()["detail"]
    assert client.get("/v1/model").json()["version"] == 1
    assert client.post("/v1/predict", json={"items": [ITEM]}).status_code == 200


def test_reload_under_load_fails_no_request(tagops_home: Path) -> None:
    predictor, loader = FakePredictor(1, delay_s=0.002), FakeLoader(2, delay_s=0.3)
    app = serve_app(
        predictor, settings_for(tagops_home), serve_config(), store=make_store(tagops_home), loader=loader
    )
    statuses: list[int] = []
    versions: list[int] = []
    stop = threading.Event()
    with TestClient(app, raise_server_exceptions=False) as client:
        headers = key(app, "admin")

        def hammer() -> None:
            while not stop.is_set():
                response = client.post("/v1/predict", json={"items": [ITEM]})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json()["model"]["version"])

        workers = [threading.Thread(target=hammer) for _ in range(6)]
        for worker in workers:
            worker.start()
        try:
            reload = client.post("/v1/admin/reload", headers=headers)
            after = [
                client.post("/v1/predict", json={"items": [ITEM]}).json()["model"]["version"]
                for _ in range(5)
            ]
        finally:
            stop.set()
            for worker in workers:
                worker.join(10)
    assert reload.status_code == 200
    assert statuses and set(statuses) == {200}
    assert set(versions) <= {1, 2} and 1 in versions
    assert after == [2] * 5


def replica(home: Path, *, load_s: float = 0.0) -> FastAPI:
    """A replica of deployment ``d1`` serving version 1, whose loader loads version 2 in ``load_s``."""
    return serve_app(
        FakePredictor(1),
        settings_for(home),
        serve_config(),
        store=make_store(home),
        loader=FakeLoader(2, delay_s=load_s),
        deployment_id="d1",
    )


# A follower whose load outlasts the liveness bound (3 s) must still count: it is switching, not gone.
@pytest.mark.parametrize("follower_load_s", [0.0, 3.5], ids=["quick-load", "load-past-liveness-bound"])
def test_a_second_replica_follows_a_reload(tagops_home: Path, follower_load_s: float) -> None:
    first, second = replica(tagops_home), replica(tagops_home, load_s=follower_load_s)
    with TestClient(first) as one, TestClient(second) as two:
        # both replicas report within one sync interval
        assert not follower_load_s or follower_load_s > first.state.service.replica_max_age_s
        deadline = time.monotonic() + 5
        while first.state.service.replicas_on("models:/tagops/1")[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        body = one.post("/v1/admin/reload", headers=key(first, "admin")).json()
        assert body["current"]["version"] == 2
        assert body["sync"] == {"replicas": 2, "on_version": 2}
        assert two.get("/v1/model").json()["version"] == 2


def test_a_replica_started_after_a_reload_starts_on_the_target(tagops_home: Path) -> None:
    first, later = replica(tagops_home), replica(tagops_home)
    reported: list[int | None] = []
    state = later.state.service.state
    heartbeat = state.heartbeat

    def record(replica_id: str, deployment_id: str, uri: str, version: int | None) -> None:
        reported.append(version)
        heartbeat(replica_id, deployment_id, uri, version)

    state.heartbeat = record  # type: ignore[method-assign]
    with TestClient(first) as one:
        assert one.post("/v1/admin/reload", headers=key(first, "admin")).json()["current"]["version"] == 2
        with TestClient(later) as two:
            assert two.post("/v1/predict", json={"items": [ITEM]}).json()["model"]["version"] == 2
    assert reported and set(reported) == {2}  # never reported on the model it left


# ------------------------------------------------------------------------------------------- metrics
def test_metrics_count_requests_predictions_errors_and_log_rows(
    served: tuple[TestClient, FastAPI, FakePredictor, FakeLoader],
) -> None:
    client, app, _, _ = served
    client.post("/v1/predict", json={"items": [ITEM, ITEM]})
    client.post("/v1/predict", json={"items": []})
    client.get("/nowhere")
    app.state.service.store.writer.flush(10)
    text = client.get("/metrics").text
    assert 'tagops_http_requests_total{method="POST",route="/v1/predict",status="200"} 1.0' in text
    assert 'tagops_http_requests_total{method="POST",route="/v1/predict",status="422"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert (
        'tagops_predictions_total{abstained="false",model_version="1",tag="natural-language-processing"} 2.0'
        in text
    )
    assert 'tagops_http_errors_total{kind="client",route="/v1/predict"} 1.0' in text
    assert "tagops_http_request_duration_seconds_bucket" in text
    assert 'tagops_prediction_log_rows_total{outcome="written"} 2.0' in text
    assert 'tagops_model_info{alias="champion",family="fake",name="tagops"' in text


@pytest.mark.parametrize(("hold", "releases"), [(0.0, "0.0"), (0.25, "1.0")])
def test_the_batch_gate_is_off_unless_configured(tagops_home: Path, hold: float, releases: str) -> None:
    app, _, _ = build(tagops_home, batch_hold_fraction=hold)
    with TestClient(app) as client:
        assert client.post("/v1/predict", json={"items": [ITEM]}).status_code == 200
        text = client.get("/metrics").text
        assert f'tagops_batch_gate_releases_total{{reason="target"}} {releases}' in text
        assert "tagops_batch_hold_seconds_sum 0.0" in text  # a lone request is never held


@pytest.mark.parametrize(
    ("hold", "in_thread", "unbatched"), [(0.25, False, "1.0"), (0.25, True, "0.0"), (0.0, False, "0.0")]
)
def test_a_lone_request_skips_the_batcher_only_behind_the_gate_with_inference_on_the_loop(
    tagops_home: Path, hold: float, in_thread: bool, unbatched: str
) -> None:
    app, predictor, _ = build(tagops_home, batch_hold_fraction=hold, predict_in_thread=in_thread)
    with TestClient(app) as client:
        warmed = len(predictor.calls)
        answer = client.post("/v1/predict", json={"items": [ITEM, ITEM]})
        assert answer.status_code == 200
        assert [p["tag"] for p in answer.json()["predictions"]] == ["natural-language-processing"] * 2
        text = client.get("/metrics").text
    assert predictor.calls[warmed:] == [2]  # one predict call either way
    assert f"tagops_predict_unbatched_total {unbatched}" in text
    assert "tagops_predict_batch_items_sum 2.0" in text  # a batch of one request is still counted
    assert len(log_rows(app)) == 2


def test_the_configured_journal_cap_applies_and_rows_past_it_are_counted(tagops_home: Path) -> None:
    # A cap far below one line (about 1 KB): every request's rows are queued without a journal line.
    app = serve_app(FakePredictor(1), settings_for(tagops_home), serve_config(log_journal_max_mb=1e-6))
    with TestClient(app) as client:
        assert client.post("/v1/predict", json={"items": [ITEM, ITEM]}).status_code == 200
        store = app.state.service.store
        assert store.writer.journal is not None and store.writer.journal.max_bytes == 1
        store.writer.flush(10)
        text = client.get("/metrics").text
        assert store.reader.count_predictions() == 2
    assert "tagops_prediction_log_unjournaled_rows_total 2.0" in text
    assert 'tagops_prediction_log_rows_total{outcome="written"} 2.0' in text


def test_metrics_count_the_journals_files(tagops_home: Path) -> None:
    from tagops.predlog.journal import Journal

    folder = tagops_home / "journal"
    app = serve_app(
        FakePredictor(1),
        settings_for(tagops_home),
        serve_config(),
        store=make_store(tagops_home, flush_interval_s=0.05, journal_dir=folder),
    )
    other = Journal(folder, "predictions")  # a live server's segment: locked, not replayed
    other.append([{"id": "x"}])
    (folder / "predictions-gone-1-abc-1.bad").write_text("garbage")
    with TestClient(app) as client:
        client.post("/v1/predict", json={"items": [ITEM]})
        app.state.service.store.writer.flush(10)
        text = client.get("/metrics").text
    assert 'tagops_prediction_log_journal_files{kind="segment"} 1.0' in text  # ours is settled and gone
    assert 'tagops_prediction_log_journal_files{kind="bad"} 1.0' in text
    other.close()


def test_each_app_has_its_own_metrics_registry(tagops_home: Path) -> None:
    first, _, _ = build(tagops_home)
    second, _, _ = build(tagops_home)
    with TestClient(first) as one, TestClient(second) as two:
        one.post("/v1/predict", json={"items": [ITEM]})
        assert 'route="/v1/predict"' not in two.get("/metrics").text


# ---------------------------------------------------------------------------------------------- cors
def test_cors_is_off_unless_configured(tagops_home: Path) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    app, _, _ = build(tagops_home)
    with TestClient(app) as client:
        assert "access-control-allow-origin" not in client.options("/v1/predict", headers=preflight).headers
    app, _, _ = build(tagops_home, cors_origins=["https://app.example"])
    with TestClient(app) as client:
        response = client.options("/v1/predict", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://app.example"


def test_a_request_with_more_text_than_turn_chars_is_answered_in_turns(tagops_home: Path) -> None:
    app, predictor, _ = build(tagops_home, turn_chars=300)
    items = [{"title": f"image {i} " + "x" * 100, "description": "pixels"} for i in range(7)]
    with TestClient(app) as client:
        predictor.calls.clear()
        response = client.post("/v1/predict", json={"items": items})
        assert response.status_code == 200
        assert [p["tag"] for p in response.json()["predictions"]] == ["computer-vision"] * 7
        assert predictor.calls == [2, 2, 2, 1]  # runs of at most 300 characters
        client.post("/v1/predict", json={"items": [ITEM]})
        assert predictor.calls[-1] == 1
        metrics = client.get("/metrics").text
    assert "tagops_predict_in_turns_total 1.0" in metrics
    assert len(log_rows(app)) == 8


def test_beyond_max_ongoing_requests_the_answer_is_503_with_retry_after(tagops_home: Path) -> None:
    app, predictor, _ = build(tagops_home, max_ongoing_requests=2, predict_in_thread=True)
    predictor.delay_s = 0.5
    with TestClient(app) as client, ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client.post, "/v1/predict", json={"items": [ITEM]}) for _ in range(8)]
        time.sleep(0.2)  # two requests are in flight, the rest were refused
        probes = [client.get(path).status_code for path in ("/healthz", "/readyz", "/metrics")]
        answers = [future.result() for future in futures]
        predictor.delay_s = 0.0
        after = client.post("/v1/predict", json={"items": [ITEM]})
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 2
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert "max_ongoing_requests" in refused.json()["detail"] and refused.json()["request_id"]
    assert probes == [200, 200, 200]
    assert after.status_code == 200  # the count went back down


def test_metrics_report_the_size_of_the_prediction_log(tagops_home: Path) -> None:
    store = make_store(tagops_home, flush_interval_s=0.05, retention_interval_s=0.05)
    app = serve_app(FakePredictor(1), settings_for(tagops_home), serve_config(), store=store)
    with TestClient(app) as client:
        assert client.post("/v1/predict", json={"items": [ITEM, ITEM]}).status_code == 200
        store.writer.flush(10)
        deadline = time.monotonic() + 10
        while (
            store.writer.size is None or store.writer.size.predictions < 2
        ) and time.monotonic() < deadline:
            time.sleep(0.02)
        text = client.get("/metrics").text
    assert 'tagops_prediction_log_size_rows{table="predictions"} 2.0' in text
    assert 'tagops_prediction_log_size_rows{table="shadow_predictions"} 0.0' in text
    (size,) = [line for line in text.splitlines() if line.startswith("tagops_prediction_log_size_bytes ")]
    assert float(size.split()[1]) > 0
