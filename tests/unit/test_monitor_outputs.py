"""Reading a window from the prediction log, the JSON/HTML outputs, and the webhook alert on loopback."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tagops.config import MonitorConfig
from tagops.errors import TagopsError
from tagops.monitoring.reference import HashingEmbedder, reference_stats
from tagops.predlog.log import PredictionLog
from tagops.predlog.writer import WriterOptions
from tagops.serving.keys import KeyStore
from tagops.serving.state import ServingState
from tagops.workloads.monitor import (
    analyse_window,
    load_reference_stats,
    publish,
    read_window,
    resolve_window,
    send_alert,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class Receiver:
    """A webhook receiver on 127.0.0.1 that records each POSTed JSON body and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def prediction(
    created_at: datetime, *, title: str, tag: str, version: int = 1, abstained: bool = False
) -> dict[str, Any]:
    probabilities = {"computer-vision": 0.1, "mlops": 0.1, "natural-language-processing": 0.1, "other": 0.1}
    probabilities[tag] = 0.7
    return {
        "id": uuid.uuid4().hex,
        "created_at": created_at,
        "request_id": None,
        "model_name": "tagops",
        "model_version": version,
        "model_uri": "models:/tagops@champion",
        "title": title,
        "description": "a description",
        "tag": "other" if abstained else tag,
        "confidence": 0.7,
        "abstained": abstained,
        "probabilities": probabilities,
        "latency_ms": 1.0,
        "replica": "r1",
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PredictionLog]:
    store = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", options=WriterOptions(flush_interval_s=0.01))
    store.writer.start()
    yield store
    store.writer.stop()
    store.dispose()


def test_read_window_bounds_version_feedback_and_abstention(store: PredictionLog) -> None:
    rows = [
        prediction(T0 - timedelta(minutes=1), title="before", tag="mlops"),
        prediction(T0, title="first", tag="mlops", abstained=True),
        prediction(T0 + timedelta(minutes=5), title="second", tag="computer-vision"),
        prediction(T0 + timedelta(minutes=6), title="other version", tag="mlops", version=2),
        prediction(T0 + timedelta(hours=1), title="at until", tag="mlops"),
    ]
    assert store.writer.submit(rows) and store.writer.flush()
    ServingState(store.engine).create_tables()
    labeller, _ = KeyStore(store.engine).create("labellers", "labeller")
    store.add_feedback(prediction_id=rows[1]["id"], tag="computer-vision", key_id=labeller.key_id)
    store.add_feedback(prediction_id=rows[1]["id"], tag="mlops", key_id=labeller.key_id)  # the newest counts
    store.add_feedback(prediction_id=rows[2]["id"], tag="mlops", key_id=None)  # untrusted: not counted
    window = read_window(store.reader, since=T0, until=T0 + timedelta(hours=1), model_version=1)
    assert [t.split()[0] for t in window.texts] == ["first", "second"]
    assert window.predicted_tags == ["mlops", "computer-vision"]  # abstention undone from probabilities
    assert window.confidences == [0.7, 0.7]
    assert window.feedback == [("mlops", "mlops")]
    every_version = read_window(store.reader, since=T0, until=T0 + timedelta(hours=1))
    assert len(every_version.texts) == 3
    with pytest.raises(ValueError, match="timezone-aware"):
        store.reader.read_predictions(since=datetime(2026, 1, 1), until=T0)


def test_time_parsing_and_window_errors() -> None:
    import typer

    from tagops.cli.params import iso_time

    assert iso_time("2026-11-01T12:00:00") == T0  # UTC without a zone, as the log stores times
    assert iso_time("2026-11-01T13:00:00+01:00") == T0
    with pytest.raises(typer.BadParameter, match="'yesterday' is not an ISO 8601 time"):
        iso_time("yesterday")
    with pytest.raises(TagopsError, match="must be before"):
        resolve_window(T0, T0, MonitorConfig())
    start, end = resolve_window(None, T0, MonitorConfig(window_hours=2))
    assert end - start == timedelta(hours=2)


def _reference(path: Path) -> Path:
    texts = [f"image segmentation camera project {i}" for i in range(60)]
    stats = reference_stats(
        texts, ["computer-vision"] * 60, [0.7] * 60, None, HashingEmbedder(), holdout_f1=0.9
    )
    path.write_text(json.dumps(stats), encoding="utf-8")
    return path


def test_load_reference_stats_from_file(tmp_path: Path) -> None:
    path = _reference(tmp_path / "reference_stats.json")
    reference, version = load_reference_stats(str(tmp_path), settings=None)  # type: ignore[arg-type]
    assert version is None and reference["num_rows"] == 60
    (tmp_path / "bad.json").write_text('{"schema_version": 1}', encoding="utf-8")
    with pytest.raises(TagopsError, match="not tagops reference statistics"):
        load_reference_stats(str(tmp_path / "bad.json"), settings=None)  # type: ignore[arg-type]
    with pytest.raises(TagopsError, match="neither a models:/ URI"):
        load_reference_stats(str(tmp_path / "missing.json"), settings=None)  # type: ignore[arg-type]
    assert path.is_file()


def test_alarm_writes_outputs_logs_and_posts(
    store: PredictionLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reference, _ = load_reference_stats(str(_reference(tmp_path / "ref.json")), settings=None)  # type: ignore[arg-type]
    rows = [
        prediction(T0 + timedelta(seconds=i), title=f"stock market ledger crypto {i}", tag="other")
        for i in range(60)
    ]
    assert store.writer.submit(rows) and store.writer.flush()
    window = read_window(store.reader, since=T0, until=T0 + timedelta(hours=1))
    with Receiver() as receiver:
        cfg = MonitorConfig(
            min_window_rows=50,
            permutations=200,
            webhook_url=receiver.url,
            model_uri=str(tmp_path / "ref.json"),
        )
        report, features = analyse_window(reference, window, cfg)
        with caplog.at_level(logging.ERROR, logger="tagops.workloads.monitor"):
            result = publish(
                report,
                window,
                features,
                reference,
                cfg,
                output_dir=tmp_path / "out",
                model_uri=cfg.model_uri,
                model_version=None,
                registry=None,
            )
    assert report.drift_alarm and result.alert_sent is True
    assert any("ALARM" in r.getMessage() for r in caplog.records)
    assert len(receiver.bodies) == 1 and receiver.bodies[0]["alarm"] is True
    assert set(receiver.bodies[0]["drifted"]) >= {"oov", "predicted_tag"}
    summary = json.loads(result.summary_path.read_text(encoding="utf-8"))
    assert summary["num_rows"] == 60 and summary["since"] == T0.isoformat()
    html = result.report_path.read_text(encoding="utf-8")
    assert "ALARM" in html and html.count("data:image/png;base64") >= 4


def test_webhook_failures_are_logged_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    with Receiver(status=500) as receiver, caplog.at_level(logging.ERROR):
        assert send_alert({"alarm": True}, receiver.url, timeout_s=2) is False
    with Receiver() as receiver:
        closed = receiver.url
    assert send_alert({"alarm": True}, closed, timeout_s=2) is False
    assert sum("failed" in r.getMessage() for r in caplog.records if "alert webhook" in r.getMessage()) >= 1


def test_a_webhook_token_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    with Receiver(status=403) as receiver:
        secret = f"{receiver.url}/services/T0KEN-PATH?token=s3cret-query"
        with caplog.at_level(logging.INFO):
            assert send_alert({"alarm": True}, secret, timeout_s=2) is False
        closed = receiver.url
    with caplog.at_level(logging.INFO):
        assert (
            send_alert({"alarm": True}, f"{closed}/services/T0KEN-PATH?token=s3cret-query", timeout_s=2)
            is False
        )
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "alert webhook http://127.0.0.1/*** failed" in logged
    assert "T0KEN" not in logged and "s3cret" not in logged
