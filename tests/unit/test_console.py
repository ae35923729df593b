"""The web console with a fake predictor: forms without JavaScript, keys, escaping, model card, monitoring."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from tagops.predlog.schema import feedback, predictions
from tagops.serving.app import create_app
from tagops.serving.console import ConsoleSources
from tagops.serving.console.sources import (
    HOLDOUT_CACHE_FILE,
    RegistryEvaluation,
    recent_monitor_summaries,
    recent_promotion_history,
)
from tagops.serving.wiring import build_replica
from tests.unit.serving_fakes import FakeLoader, FakePredictor, make_store, serve_config, settings_for

pytestmark = pytest.mark.unit

NLP = {"title": "BERT for text classification", "description": "language models"}
UNSURE = {"title": "graph neural networks", "description": ""}
PREDICTION_ID = re.compile(r'name="prediction_id" value="([0-9a-f]{32})"')

REPORT: dict[str, Any] = {
    "overall": {
        "precision": 0.81,
        "recall": 0.8,
        "f1": 0.805,
        "macro_f1": 0.77,
        "accuracy": 0.8,
        "num_samples": 40,
        "f1_ci95": [0.7, 0.9],
    },
    "per_class": {
        "computer-vision": {"precision": 0.9, "recall": 0.85, "f1": 0.874, "num_samples": 10},
        "mlops": {"precision": 0.7, "recall": 0.75, "f1": 0.724, "num_samples": 10},
        "natural-language-processing": {"precision": 0.88, "recall": 0.9, "f1": 0.889, "num_samples": 10},
        "other": {"precision": 0.6, "recall": 0.55, "f1": 0.574, "num_samples": 10},
    },
    "confusion_matrix": {
        "labels": ["computer-vision", "mlops", "natural-language-processing", "other"],
        "matrix": [[9, 0, 0, 1], [1, 7, 1, 1], [0, 0, 9, 1], [1, 2, 1, 6]],
    },
    "calibration": {
        "ece": 0.0423,
        "ece_ci95": [0.02, 0.08],
        "bins": [
            {"low": 0.5, "high": 0.6, "count": 12, "accuracy": 0.58, "confidence": 0.55},
            {"low": 0.9, "high": 1.0, "count": 28, "accuracy": 0.93, "confidence": 0.95},
            {"low": 0.0, "high": 0.1, "count": 0, "accuracy": 0.0, "confidence": 0.0},
        ],
    },
    "threshold": 0.5,
}


def summary(**overrides: Any) -> dict[str, Any]:
    """A ``tagops monitor`` summary.json of one window with an alarm on the predicted tags."""
    values: dict[str, Any] = {
        "kind": "tagops.monitor",
        "created_at": "2030-01-02T03:04:05+00:00",
        "since": "2030-01-01T03:04:05+00:00",
        "until": "2030-01-02T03:04:05+00:00",
        "model_uri": "models:/tagops/1",
        "model_version": 1,
        "num_rows": 250,
        "alarm": True,
        "drift_alarm": True,
        "performance_alarm": False,
        "drifted": ["predicted_tag"],
        "alpha": 0.01,
        "correction": "holm",
        "skipped": None,
        "tests": [
            {
                "name": "predicted_tag",
                "kind": "prediction",
                "method": "chi2_contingency",
                "statistic": 31.5,
                "p_value": 0.0000123,
                "p_adjusted": 0.0000615,
                "drift": True,
                "skipped": None,
                "detail": {},
            },
            {
                "name": "token_count",
                "kind": "data",
                "method": "ks_2samp",
                "statistic": 0.05,
                "p_value": 0.42,
                "p_adjusted": 1.0,
                "drift": False,
                "skipped": None,
                "detail": {},
            },
        ],
        "performance": {
            "feedback_rows": 64,
            "min_feedback_rows": 30,
            "holdout_f1": 0.805,
            "f1": 0.7712,
            "f1_ci95": [0.69, 0.85],
            "max_f1_drop": 0.1,
        },
        "window": {},
    }
    values.update(overrides)
    return values


@dataclass
class Console:
    client: TestClient
    app: FastAPI
    home: Path
    sources: ConsoleSources

    def key(self, role: str) -> str:
        _, token = self.app.state.service.keys.create(f"console {role}", role)
        return str(token)

    def predict(self, item: dict[str, str], **extra: str) -> Any:
        return self.client.post("/console/predict", data={**item, **extra})

    def rows(self, table: Any) -> list[Any]:
        store = self.app.state.service.store
        assert store.writer.flush(10)
        with store.engine.connect() as connection:
            return list(connection.execute(select(table)))


def build_console(
    home: Path,
    *,
    report: dict[str, Any] | None = None,
    predictor: FakePredictor | None = None,
    **overrides: Any,
) -> tuple[FastAPI, ConsoleSources]:
    sources = ConsoleSources(
        reports_dir=home / "reports",
        promotion_history=home / "registry" / "promotion_history.jsonl",
        evaluation=lambda model: report,
    )
    replica = build_replica(
        serve_config(**overrides),
        settings_for(home),
        predictor=predictor or FakePredictor(1),
        store=make_store(home, flush_interval_s=0.05),
        loader=FakeLoader(2),
    )
    return create_app(replica.service, replica.infer, console=sources), sources


@pytest.fixture
def console_factory(tagops_home: Path) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**kwargs: Any) -> Console:
        app, sources = build_console(tagops_home, **kwargs)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return Console(client, app, tagops_home, sources)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def console(console_factory: Any) -> Console:
    result: Console = console_factory()
    return result


class PageAudit(HTMLParser):
    """Collects what the page checks look at: tags, attribute names, linked URLs, labels and controls."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.urls: list[str] = []
        self.labelled: set[str] = set()
        self.controls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.append(tag)
        self.attributes |= set(values)
        self.urls += [str(values[name]) for name in ("href", "src", "action") if values.get(name)]
        if tag == "label" and values.get("for"):
            self.labelled.add(str(values["for"]))
        if tag in ("input", "textarea", "select") and values.get("type") != "hidden":
            self.controls.append(str(values.get("id")))


def assert_page(response: Any) -> str:
    """A console page: HTML with a language and one landmark, the CSP, no script, only local resources."""
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy
    html = str(response.text)
    audit = PageAudit()
    audit.feed(html)
    assert '<html lang="en">' in html
    assert audit.tags.count("main") == 1
    assert "script" not in audit.tags
    assert not [a for a in audit.attributes if a.startswith("on") or a == "style"], "inline handler or style"
    assert not [u for u in audit.urls if u[0] not in "/#" or u.startswith("//")], audit.urls
    assert set(audit.controls) <= audit.labelled, "a control without a label"
    return html


# ---------------------------------------------------------------------------------------- predict
def test_the_predict_form_is_plain_html_with_labels(console: Console) -> None:
    response = console.client.get("/")
    assert response.status_code == 200
    html = assert_page(response)
    assert '<form class="card" method="post" action="/console/predict"' in html
    assert 'name="title"' in html and 'name="description"' in html
    assert 'name="key"' not in html  # predictions need no key unless the config says so
    assert '<button type="submit">Predict</button>' in html
    assert 'aria-current="page"' in html


def test_a_posted_form_is_answered_with_the_tag_and_a_bar_per_probability(console: Console) -> None:
    response = console.predict(NLP)
    assert response.status_code == 200, response.text
    html = assert_page(response)
    assert 'id="predicted-tag">natural-language-processing</strong>' in html
    bars = re.findall(r'<meter min="0" max="1" value="([0-9.]+)" aria-label="([^"]+)"', html)
    assert len(bars) == 4
    assert abs(sum(float(value) for value, _ in bars) - 1) < 1e-3
    assert bars[0][1].startswith("natural-language-processing")  # the most likely first
    assert 'id="abstention"' not in html
    assert "at or above the abstention threshold of 50.0 %" in html
    assert f'value="{NLP["title"]}"' in html  # the form keeps what was typed
    (prediction_id,) = PREDICTION_ID.findall(html)
    (row,) = console.rows(predictions)
    assert (row.id, row.title, row.tag) == (prediction_id, NLP["title"], "natural-language-processing")


def test_an_abstention_is_explained_with_the_confidence_and_the_threshold(console: Console) -> None:
    html = assert_page(console.predict(UNSURE))
    assert 'id="predicted-tag">other</strong>' in html
    abstention = html[html.index('id="abstention"') :]
    abstention = abstention[: abstention.index("</div>")]
    assert "The model abstained" in abstention
    assert "confidence 25.0 %" in abstention and "threshold of\n      50.0 %" in abstention
    assert "<strong>computer-vision</strong>" in abstention  # its most likely tag (ties by name)


def test_markup_in_the_title_is_escaped_everywhere(console: Console) -> None:
    title = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    html = assert_page(console.predict({"title": title, "description": "</textarea><b>bold</b>"}))
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;/textarea&gt;&lt;b&gt;bold&lt;/b&gt;" in html


def test_an_invalid_form_names_the_field_and_predicts_nothing(console_factory: Any) -> None:
    console = console_factory(max_text_length=20)
    empty = console.predict({"title": "", "description": ""})
    assert empty.status_code == 422
    html = assert_page(empty)
    assert 'role="alert"' in html and re.search(r"<li>Title: [^<]*at least 1", html)
    long = console.predict({"title": "ok", "description": "x" * 21})
    assert long.status_code == 422
    assert re.search(r"<li>Description: [^<]*at most 20", long.text)
    nul = console.predict({"title": "a\x00b", "description": ""})
    assert nul.status_code == 422 and "NUL" in nul.text
    assert console.rows(predictions) == []


def test_a_body_that_is_not_our_form_is_refused(console: Console) -> None:
    as_json = console.client.post("/console/predict", json=NLP)
    assert as_json.status_code == 415
    assert_page(as_json)
    crowded = console.client.post(
        "/console/predict",
        content="&".join(f"f{i}=1" for i in range(20)),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert crowded.status_code == 400
    not_utf8 = console.client.post(
        "/console/predict",
        content="title=%FF%FE",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_utf8.status_code == 400


def test_keyed_mode_asks_for_a_key_and_checks_it_as_the_api_does(console_factory: Any) -> None:
    console = console_factory(require_key_for_predict=True)
    form = assert_page(console.client.get("/"))
    assert '<input id="predict-key" name="key" type="password" required' in form
    missing = console.predict(NLP)
    assert missing.status_code == 401
    assert "an API key is required" in missing.text and 'role="alert"' in missing.text
    wrong = console.predict(NLP, key="tagops_000000000000_" + "x" * 43)
    assert wrong.status_code == 401 and "unknown or revoked API key" in wrong.text
    assert console.rows(predictions) == []
    token = console.key("client")
    answered = console.predict(NLP, key=token)
    assert answered.status_code == 200, answered.text
    assert token not in answered.text  # a key is never written back into a page
    assert 'id="predicted-tag">natural-language-processing' in answered.text
    metrics = console.client.get("/metrics").text
    assert 'tagops_auth_failures_total{reason="missing"} 1.0' in metrics


# --------------------------------------------------------------------------------------- feedback
def predicted_id(console: Console) -> str:
    (prediction_id,) = PREDICTION_ID.findall(console.predict(NLP).text)
    return str(prediction_id)


def test_the_answer_offers_feedback_and_a_labellers_is_trusted(console: Console) -> None:
    answer = console.predict(NLP).text
    assert '<form method="post" action="/console/feedback"' in answer
    assert '<option value="natural-language-processing" selected>' in answer  # the answer preselected
    (prediction_id,) = PREDICTION_ID.findall(answer)
    token = console.key("labeller")
    response = console.client.post(
        "/console/feedback", data={"prediction_id": prediction_id, "tag": "mlops", "key": token}
    )
    assert response.status_code == 200, response.text
    html = assert_page(response)
    assert '<strong class="status">trusted</strong>' in html and 'role="status"' in html
    assert token not in html
    (row,) = console.rows(feedback)
    assert (row.prediction_id, row.tag) == (prediction_id, "mlops")


def test_a_clients_feedback_waits_for_review(console: Console) -> None:
    prediction_id = predicted_id(console)
    response = console.client.post(
        "/console/feedback",
        data={"prediction_id": prediction_id, "tag": "mlops", "key": console.key("client")},
    )
    assert response.status_code == 200
    assert '<strong class="status">pending_review</strong>' in response.text
    assert "tagops feedback review" in response.text


def test_feedback_with_a_bad_key_shows_the_error_and_keeps_the_form(console: Console) -> None:
    prediction_id = predicted_id(console)
    bad = console.client.post(
        "/console/feedback", data={"prediction_id": prediction_id, "tag": "mlops", "key": "tagops_nope"}
    )
    assert bad.status_code == 401
    html = assert_page(bad)
    assert "Feedback not recorded: unknown or revoked API key" in html and "(HTTP 401)" in html
    assert f'name="prediction_id" value="{prediction_id}"' in html  # the user can try again
    assert '<option value="mlops" selected>' in html
    missing = console.client.post("/console/feedback", data={"prediction_id": prediction_id, "tag": "mlops"})
    assert missing.status_code == 401 and "an API key is required" in missing.text
    assert console.rows(feedback) == []


def test_feedback_errors_follow_the_api_rules(console: Console) -> None:
    prediction_id, token = predicted_id(console), console.key("labeller")
    bad_tag = console.client.post(
        "/console/feedback", data={"prediction_id": prediction_id, "tag": "vision", "key": token}
    )
    assert bad_tag.status_code == 422 and "Correct tag: tag must be one of" in bad_tag.text
    unknown = console.client.post(
        "/console/feedback", data={"prediction_id": "0" * 32, "tag": "mlops", "key": token}
    )
    assert unknown.status_code == 404 and "no prediction with id" in unknown.text
    malformed = console.client.post(
        "/console/feedback", data={"prediction_id": "not-an-id", "tag": "mlops", "key": token}
    )
    assert malformed.status_code == 422 and "Prediction: String should match pattern" in malformed.text
    assert console.rows(feedback) == []


def test_feedback_past_the_keys_limit_is_429_with_when_to_retry(console_factory: Any) -> None:
    console = console_factory(feedback_limits={"client": {"per_minute": 1}})
    prediction_id, token = predicted_id(console), console.key("client")
    form = {"prediction_id": prediction_id, "tag": "mlops", "key": token}
    assert console.client.post("/console/feedback", data=form).status_code == 200
    refused = console.client.post("/console/feedback", data=form)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "Feedback not recorded" in refused.text and "(HTTP 429)" in refused.text
    assert "Retry after" in refused.text


# ------------------------------------------------------------------------------------- model card
def test_the_model_card_shows_provenance_and_the_holdout_report(console_factory: Any) -> None:
    console = console_factory(report=REPORT)
    response = console.client.get("/console/model")
    assert response.status_code == 200
    html = assert_page(response)
    assert 'id="model-version">version 1</span>' in html
    assert 'id="model-name">tagops</dd>' in html and 'id="model-family">fake</dd>' in html
    assert "d" * 64 in html and "run-1" in html and "@champion" not in html
    assert "<dt>Alias</dt><dd>champion</dd>" in html
    assert "50.0 %" in html  # the abstention threshold
    classes = html[html.index('id="class-scores"') :]
    classes = classes[: classes.index("</table>")]
    row = re.search(
        r"<th scope=\"row\">mlops</th>\s*<td[^>]*>([^<]+)</td>\s*<td[^>]*>([^<]+)</td>\s*<td[^>]*>([^<]+)",
        classes,
    )
    assert row is not None and row.groups() == ("0.700", "0.750", "0.724")
    assert "(95 % interval 0.700–0.900)" in html
    matrix = html[html.index('id="confusion-matrix"') :]
    assert matrix.count('class="num diagonal"') == 4
    assert 'id="ece">0.042</strong>' in html
    reliability = html[html.index('id="reliability"') :]
    assert reliability.count("<meter") == 2  # empty bins are left out


def test_the_model_card_falls_back_to_the_runs_metrics(console_factory: Any) -> None:
    console = console_factory(report=None)
    html = assert_page(console.client.get("/console/model"))
    assert '<td class="num">0.900</td>' in html  # holdout_f1 recorded with the version
    assert "the full evaluation report is not available here" in html
    assert 'id="confusion-matrix"' not in html and 'id="reliability"' not in html

    bare = FakePredictor(None, threshold=None)
    bare.metadata = {"uri": "/models/local"}
    console = console_factory(report=None, predictor=bare)
    html = assert_page(console.client.get("/console/model"))
    assert 'id="no-evaluation"' in html and "No calibration measurement" in html


def test_a_report_of_another_shape_still_renders(console_factory: Any) -> None:
    odd = {
        "per_class": {"mlops": {"f1": "n/a"}, "x": 3},
        "confusion_matrix": {"labels": ["a"], "matrix": [[1, 2]]},
    }
    console = console_factory(report=odd)
    response = console.client.get("/console/model")
    assert response.status_code == 200
    assert 'id="confusion-matrix"' not in response.text


# ------------------------------------------------------------------------------------- monitoring
def write_monitoring(home: Path) -> None:
    folder = home / "reports" / "monitor-20300102-030405"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary()), encoding="utf-8")
    history = home / "registry" / "promotion_history.jsonl"
    history.parent.mkdir(parents=True, exist_ok=True)
    records = [
        {
            "time": "2030-01-01T00:00:00+0000",
            "action": "promote",
            "version": 1,
            "champion": 1,
            "reason": "no champion yet",
            "challenger_f1": 0.805,
            "champion_f1": None,
            "trigger": "initial",
        },
        {
            "time": "2030-01-02T00:00:00+0000",
            "action": "reject",
            "version": 2,
            "champion": 1,
            "reason": "class <mlops> F1 fell by 0.2",
            "challenger_f1": 0.7,
            "champion_f1": 0.805,
        },
    ]
    history.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"torn": ', encoding="utf-8")


def test_monitoring_shows_live_models_to_anyone_and_the_rest_to_an_admin(console: Console) -> None:
    write_monitoring(console.home)
    public = console.client.get("/console/monitoring")
    assert public.status_code == 200
    html = assert_page(public)
    assert 'id="served-model">tagops version 1 (@champion)' in html
    assert "none configured." in html and "no rollout in progress." in html
    assert 'id="admin-form"' in html and "predicted_tag" not in html and "no champion yet" not in html

    for role, status in (("client", 403), ("labeller", 403)):
        refused = console.client.post("/console/monitoring", data={"key": console.key(role)})
        assert refused.status_code == status and "does not allow this; it needs admin" in refused.text
        assert "predicted_tag" not in refused.text
    assert console.client.post("/console/monitoring", data={"key": "nope"}).status_code == 401

    token = console.key("admin")
    shown = console.client.post("/console/monitoring", data={"key": token})
    assert shown.status_code == 200, shown.text
    html = assert_page(shown)
    assert token not in html
    assert '<span class="badge badge-alarm">alarm</span>' in html
    assert "Drift in: predicted_tag." in html
    assert '<td class="num">1.23e-05</td>' in html and '<td class="num">0.420</td>' in html
    assert (
        "<strong>0.771</strong> (95 % interval 0.690–0.850)" in html and "on 64 labelled predictions" in html
    )
    history = html[html.index('id="history"') :]
    assert history.index("reject") < history.index("promote")  # newest first; the torn line skipped
    assert "class &lt;mlops&gt; F1 fell by 0.2" in history
    assert 'id="no-rollout"' in html


def test_monitoring_without_data_says_so(console: Console) -> None:
    html = assert_page(console.client.post("/console/monitoring", data={"key": console.key("admin")}))
    assert 'id="no-windows"' in html and 'id="no-history"' in html and 'id="no-rollout"' in html


def test_monitoring_shows_a_rollout_to_an_admin(console: Console) -> None:
    admin = {"Authorization": f"Bearer {console.key('admin')}"}
    started = console.client.post(
        "/v1/admin/rollout", json={"model_uri": "models:/tagops/2", "weight": 25}, headers=admin
    )
    assert started.status_code == 200, started.text
    public = console.client.get("/console/monitoring").text
    assert 'id="canary-model">tagops version 2 answers 25.0 % of requests.' in public
    html = console.client.post("/console/monitoring", data={"key": console.key("admin")}).text
    rollout = html[html.index('id="rollout"') :]
    assert "<dt>State</dt><dd>active</dd>" in rollout and "25.0 % of requests" in rollout


# ---------------------------------------------------------------------------------- assets and API
def test_every_asset_a_page_links_is_served_by_the_app(console: Console) -> None:
    linked: set[str] = set()
    for page in ("/", "/console/model", "/console/monitoring"):
        linked |= set(re.findall(r'(?:href|src)="(/console/static/[^"]+)"', console.client.get(page).text))
    assert linked == {"/console/static/console.css", "/console/static/favicon.svg"}
    css = console.client.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in css.text and "url(" not in css.text and "@import" not in css.text
    icon = console.client.get("/console/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert console.client.get("/console/static/../app.py").status_code == 404


def test_the_console_is_not_part_of_the_api_schema(console: Console) -> None:
    paths = set(console.app.openapi()["paths"])
    assert not {p for p in paths if p == "/" or p.startswith("/console")}
    assert "/v1/predict" in paths


# ----------------------------------------------------------------------------------------- sources
def test_sources_read_the_newest_files_and_skip_broken_ones(tmp_path: Path) -> None:
    for name, created in (
        ("monitor-a", "2030-01-01"),
        ("monitor-b", "2030-01-03"),
        ("monitor-c", "2030-01-02"),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(
            json.dumps(summary(created_at=created)), encoding="utf-8"
        )
    (tmp_path / "monitor-broken").mkdir()
    (tmp_path / "monitor-broken" / "summary.json").write_text("{", encoding="utf-8")
    found = recent_monitor_summaries(tmp_path, limit=10)
    assert [s["folder"] for s in found] == ["monitor-b", "monitor-c", "monitor-a"]
    assert recent_monitor_summaries(tmp_path / "absent") == []

    history = tmp_path / "history.jsonl"
    history.write_text(
        '{"action": "promote", "version": 1}\nnot json\n[1]\n{"action": "reject", "version": 2}\n'
    )
    assert [r["version"] for r in recent_promotion_history(history)] == [2, 1]
    assert recent_promotion_history(history, limit=1) == [{"action": "reject", "version": 2}]
    assert recent_promotion_history(tmp_path / "absent.jsonl") == []


def test_registry_evaluation_reads_the_cached_report_without_mlflow(tmp_path: Path) -> None:
    from tagops.serving.model import ServedModel

    settings = settings_for(tmp_path)
    cache = settings.models_dir / "registry" / "tagops" / "1" / HOLDOUT_CACHE_FILE
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps(REPORT), encoding="utf-8")
    lookup = RegistryEvaluation(settings)
    assert lookup(ServedModel(FakePredictor(1), "models:/tagops/1", "champion")) == REPORT
    folder_model = FakePredictor(None)
    folder_model.metadata = {"uri": "/some/folder", "run_id": "r"}
    assert lookup(ServedModel(folder_model, "/some/folder", None)) is None  # not a registry model
