"""The web console in a real browser (headless Chromium through Playwright) against `tagops serve`.

A linear model is trained on the fixtures and promoted, `tagops serve --engine uvicorn` serves it on
loopback, and traffic with labelled feedback is sent through the API so that one real `tagops monitor`
window can be written. The browser then predicts (reaching the title field from the keyboard and
submitting with Enter), sends feedback with a labeller key, reads the model card and, with an admin key,
the monitoring page; and predicts once more with JavaScript turned off. Any console error or uncaught
page error fails the test (a Content-Security-Policy violation is one). Each page is saved as a
screenshot under the test's temporary folder and, when ``TAGOPS_SCREENSHOTS_DIR`` is set, there too.

Needs the ``playwright`` package (a dev dependency) and Debian's Chromium at ``/usr/bin/chromium``; where
either is missing the tests are skipped, except under CI (``CI`` set), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tagops import LABELS
from tagops.config import MonitorConfig
from tests.integration.helpers import isolated_home, serving, train_linear_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a headless browser in a container: no sandbox (no user namespaces), nothing fetched from
#: the network on its own (updates, sync, field trials), no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000


def require_browser() -> None:
    """Skip (fail under CI) when Playwright or Chromium is not installed."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install -e '.[dev]')")
    if not CHROMIUM.is_file():
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    if missing:
        message = "the browser tests need " + " and ".join(missing)
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Env:
    url: str
    labeller_key: str
    admin_key: str
    shots: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[Env]:
    require_browser()
    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog
    from tagops.registry.client import Registry
    from tagops.serving.keys import KeyStore
    from tagops.workloads.monitor import run_monitor

    root = tmp_path_factory.mktemp("console")
    with isolated_home(root / "home") as settings:
        registry = Registry(settings)
        train_linear_champion(settings, fixture_dir, registry)
        store = PredictionLog(default_database_url(settings))
        store.create_tables()
        keys = KeyStore(store.engine)
        _, labeller_key = keys.create("annotator", "labeller")
        _, admin_key = keys.create("ops", "admin")
        store.dispose()
        serve_yaml = root / "serve.yaml"
        serve_yaml.write_text(
            "engine: uvicorn\nlog_flush_interval_s: 0.05\nsync_interval_s: 0.2\n", encoding="utf-8"
        )
        with serving(serve_yaml) as url:
            send_labelled_traffic(url, fixture_dir / "dataset.csv", labeller_key)
            monitor = MonitorConfig(
                min_window_rows=20, min_feedback_rows=5, permutations=200, bootstrap_samples=200
            )
            run_monitor(
                monitor, settings, output_dir=settings.reports_dir / "monitor-browser", log_to_mlflow=False
            )
            yield Env(url, labeller_key, admin_key, root / "screenshots")


def send_labelled_traffic(url: str, dataset: Path, labeller_key: str) -> None:
    """Predict every fixture project through the API and label the first 20 with their true tags."""
    frame = pd.read_csv(dataset, dtype=str, keep_default_na=False)
    with httpx.Client(base_url=url, timeout=30) as http:
        items = [
            {"title": t, "description": d} for t, d in zip(frame["title"], frame["description"], strict=True)
        ]
        ids: list[str] = []
        for start in range(0, len(items), 16):
            answer = http.post("/v1/predict", json={"items": items[start : start + 16]})
            assert answer.status_code == 200, answer.text
            ids += [p["prediction_id"] for p in answer.json()["predictions"]]
        headers = {"Authorization": f"Bearer {labeller_key}"}
        for prediction_id, tag in list(zip(ids, frame["tag"], strict=True))[:20]:
            stored = http.post(
                "/v1/feedback", json={"prediction_id": prediction_id, "tag": tag}, headers=headers
            )
            assert stored.status_code == 201, stored.text


@pytest.fixture(scope="module")
def browser(env: Env) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    """A page whose console errors and uncaught errors are collected; screenshots go where asked."""

    page: Any
    shots: Path
    errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if extra := os.environ.get("TAGOPS_SCREENSHOTS_DIR"):
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        return path

    def assert_no_errors(self) -> None:
        assert self.errors == [], "the browser reported errors:\n" + "\n".join(self.errors)


def open_page(browser: Any, env: Env, *, javascript: bool = True) -> Watched:
    context = browser.new_context(java_script_enabled=javascript, viewport={"width": 1100, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    env.shots.mkdir(parents=True, exist_ok=True)
    watched = Watched(page, env.shots)
    page.on(
        "console",
        lambda message: message.type == "error" and watched.errors.append(f"console: {message.text}"),
    )
    page.on("pageerror", lambda error: watched.errors.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: watched.errors.append(f"request failed: {request.url}"))
    return watched


@pytest.fixture
def watched(browser: Any, env: Env) -> Iterator[Watched]:
    result = open_page(browser, env)
    try:
        yield result
    finally:
        result.page.context.close()


def test_predict_from_the_keyboard_then_give_trusted_feedback(env: Env, watched: Watched) -> None:
    page = watched.page
    page.goto(env.url + "/")
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("main").count() == 1
    for _ in range(10):  # past the skip link and the navigation, to the first field
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "title":
            break
    assert page.evaluate("document.activeElement.id") == "title"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "keyboard focus is not visible"
    page.keyboard.type("Fine-tuning BERT for sentiment analysis of product reviews")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    tag = page.locator("#predicted-tag").inner_text()
    assert tag in LABELS
    bars = page.locator("#probabilities meter")
    assert bars.count() == len(LABELS)
    assert all(bars.nth(i).is_visible() for i in range(bars.count()))
    assert page.locator("#probabilities tbody tr").first.locator("th").inner_text() in LABELS
    watched.screenshot("01-predict-answer")

    page.select_option("#feedback-tag", "natural-language-processing")
    page.fill("#feedback-key", env.labeller_key)
    with page.expect_navigation():
        page.get_by_role("button", name="Send feedback").click()
    status = page.locator("#feedback-status")
    assert "trusted" in status.inner_text()
    assert env.labeller_key not in page.content()
    watched.screenshot("02-feedback-trusted")
    watched.assert_no_errors()


def test_the_model_card_shows_the_version_and_per_class_metrics(env: Env, watched: Watched) -> None:
    page = watched.page
    page.goto(env.url + "/")
    with page.expect_navigation():
        page.get_by_role("link", name="Model card").click()
    assert page.url.endswith("/console/model")
    assert page.locator("#model-version").inner_text() == "version 1"
    assert page.locator("#model-family").inner_text() == "linear"
    rows = page.locator("#class-scores tbody tr")
    assert rows.count() == len(LABELS)
    for i in range(rows.count()):
        cells = [text.strip() for text in rows.nth(i).locator("td.num").all_inner_texts()]
        precision, recall, f1 = (float(value) for value in cells[:3])  # the full report: no dashes
        assert min(precision, recall, f1) >= 0.0 and max(precision, recall, f1) <= 1.0
    assert page.locator("#confusion-matrix td.diagonal").count() == len(LABELS)
    assert float(page.locator("#ece").inner_text()) >= 0.0
    assert page.locator("#reliability meter").count() >= 1
    watched.screenshot("03-model-card")
    watched.assert_no_errors()


def test_the_monitoring_page_shows_the_window_and_history_to_an_admin(env: Env, watched: Watched) -> None:
    page = watched.page
    page.goto(env.url + "/console/monitoring")
    assert "version 1" in page.locator("#served-model").inner_text()
    assert "no rollout in progress" in page.locator("#canary-model").inner_text()
    watched.screenshot("04-monitoring-public")
    page.fill("#admin-key", env.admin_key)
    with page.expect_navigation():
        page.get_by_role("button", name="Show").click()
    windows = page.locator("#windows article")
    assert windows.count() == 1
    tests = windows.first.locator("table tbody tr")
    assert tests.count() >= 5  # token count, length, OOV, embedding, predicted tag, confidence
    p_values = [text.strip() for text in tests.locator("td:nth-child(5)").all_inner_texts()]
    assert any(value != "—" for value in p_values), p_values
    assert "on 20 labelled predictions" in windows.first.inner_text()
    history = page.locator("#history tbody tr")
    assert history.count() == 1 and "promote" in history.first.inner_text()
    assert env.admin_key not in page.content()
    watched.screenshot("05-monitoring-admin")
    watched.assert_no_errors()


def test_the_predict_form_works_without_javascript(browser: Any, env: Env) -> None:
    watched = open_page(browser, env, javascript=False)
    try:
        page = watched.page
        page.goto(env.url + "/")
        page.fill("#title", "YOLO object detection on drone images")
        page.fill("#description", "real-time detection of vehicles in aerial video")
        with page.expect_navigation():
            page.get_by_role("button", name="Predict").click()
        assert page.locator("#predicted-tag").inner_text() in LABELS
        assert page.locator("#probabilities meter").count() == len(LABELS)
        assert page.locator("#feedback-form").count() == 1
        watched.screenshot("06-predict-without-javascript")
        watched.assert_no_errors()
    finally:
        watched.page.context.close()
