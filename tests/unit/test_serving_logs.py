"""Request ids and JSON log lines of the prediction API: the header round trip and the id in every line."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tagops.config import ServeConfig
from tagops.serving.logs import (
    REQUEST_ID,
    JsonFormatter,
    ReplicaLogHandler,
    RequestIdFilter,
    accept_request_id,
    configure_replica_logging,
    json_handler,
)
from tagops.serving.ray.deployment import deployment_options, serve_deploy_config
from tests.unit.serving_fakes import FakePredictor, serve_app, serve_config, settings_for

pytestmark = pytest.mark.unit

ITEM = {"title": "BERT for text classification", "description": "language models"}


@pytest.fixture
def client(tagops_home: Path) -> Iterator[TestClient]:
    app = serve_app(FakePredictor(1), settings_for(tagops_home), serve_config())

    @app.get("/log-something", include_in_schema=False)
    async def log_something() -> dict[str, str]:
        logging.getLogger("tagops.serving.test").warning("inside the request")
        return {"ok": "yes"}

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What a JSON console handler on the root logger writes, as `tagops serve --log-format json` has it."""
    stream = io.StringIO()
    handler = json_handler(logging.StreamHandler(stream))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


# ---------------------------------------------------------------------------------------- the header
@pytest.mark.parametrize("offered", ["req-42", "a.b_c-D9", "f" * 64, "2b1e0d5c-3c4f-4a8e-9d61-0f3c2a7b9e10"])
def test_a_sane_client_id_is_kept_and_returned(client: TestClient, offered: str) -> None:
    response = client.post("/v1/predict", json={"items": [ITEM]}, headers={"X-Request-ID": offered})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == offered


@pytest.mark.parametrize(
    "offered",
    ["f" * 65, "has space", 'quote"d', "semi;colon", "trace:id", "<script>", "ünïcode".encode(), "a/b"],
)
def test_a_hostile_client_id_is_replaced(client: TestClient, offered: str | bytes) -> None:
    response = client.post("/v1/predict", json={"items": [ITEM]}, headers={"X-Request-ID": offered})
    assert response.status_code == 200
    returned = response.headers["x-request-id"]
    assert returned != offered and len(returned) == 32 and int(returned, 16) >= 0


def test_a_missing_id_is_generated_afresh_for_each_request(client: TestClient) -> None:
    first, second = (client.get("/healthz").headers["x-request-id"] for _ in range(2))
    assert len(first) == len(second) == 32 and first != second


def test_error_bodies_carry_the_same_id(client: TestClient) -> None:
    response = client.post("/v1/predict", json={"items": []}, headers={"X-Request-ID": "bad-body-1"})
    assert response.status_code == 422
    assert response.json()["request_id"] == response.headers["x-request-id"] == "bad-body-1"


def test_accept_request_id_bounds() -> None:
    assert accept_request_id("ok_1.2-3") == "ok_1.2-3"
    for offered in (None, "", " ", "x" * 65, "new\nline"):
        assert len(accept_request_id(offered)) == 32


# ------------------------------------------------------------------------------------------ the lines
def test_a_log_line_inside_a_request_is_json_with_its_request_id(
    client: TestClient, json_lines: io.StringIO
) -> None:
    response = client.get("/log-something", headers={"X-Request-ID": "req-log-7"})
    assert response.status_code == 200
    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    (entry,) = [line for line in lines if line["logger"] == "tagops.serving.test"]
    assert entry["message"] == "inside the request"
    assert entry["level"] == "WARNING"
    assert entry["request_id"] == "req-log-7" == response.headers["x-request-id"]
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert REQUEST_ID.get() is None  # the id does not outlive its request


def test_a_line_outside_a_request_has_no_request_id(json_lines: io.StringIO) -> None:
    logging.getLogger("tagops.serving.test").warning("between requests")
    entry = json.loads(json_lines.getvalue())
    assert entry["message"] == "between requests" and "request_id" not in entry


def test_the_formatter_writes_one_line_with_the_traceback() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("here",), exc_info=sys.exc_info()
        )
    token = REQUEST_ID.set("r-1")
    try:
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed here" and entry["request_id"] == "r-1"
    assert "RuntimeError: boom" in entry["exception"]


# ----------------------------------------------------------------------------------- Ray Serve replica
def test_a_replica_logs_json_on_stderr_including_serves_own_lines() -> None:
    root, serve_logger, ours = (
        logging.getLogger(),
        logging.getLogger("ray.serve"),
        logging.getLogger("tagops"),
    )
    before_root, before_serve = list(root.handlers), list(serve_logger.handlers)
    levels = serve_logger.level, ours.level
    serve_logger.setLevel(logging.INFO)  # Serve's level, from its logging config
    serve_stream = io.StringIO()
    serve_logger.addHandler(logging.StreamHandler(serve_stream))  # what Serve installs for the replica
    try:
        configure_replica_logging("text")
        assert root.handlers == before_root  # text: Ray's own format, unchanged
        configure_replica_logging("json")
        configure_replica_logging("json")  # a second call adds nothing
        assert len([h for h in root.handlers if isinstance(h, ReplicaLogHandler)]) == 1
        assert ours.level == logging.INFO  # tagops' own INFO lines, as `tagops serve` shows them
        token = REQUEST_ID.set("replica-req")
        try:
            serve_logger.info("served")
        finally:
            REQUEST_ID.reset(token)
        entry = json.loads(serve_stream.getvalue())
        assert (entry["logger"], entry["message"], entry["request_id"]) == (
            "ray.serve",
            "served",
            "replica-req",
        )
    finally:
        root.handlers[:] = before_root
        serve_logger.handlers[:] = before_serve
        serve_logger.setLevel(levels[0])
        ours.setLevel(levels[1])


def test_json_logs_reach_the_ray_serve_deployment_and_the_default_renders_nothing_new() -> None:
    assert "encoding" not in deployment_options(ServeConfig())["logging_config"]
    assert deployment_options(ServeConfig(log_format="json"))["logging_config"]["encoding"] == "JSON"
    args = serve_deploy_config(ServeConfig())["applications"][0]["args"]["config"]
    assert "log_format" not in args  # the builder fills in the default
    args = serve_deploy_config(ServeConfig(log_format="json"))["applications"][0]["args"]["config"]
    assert args["log_format"] == "json"
