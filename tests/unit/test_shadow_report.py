"""`tagops shadow report`: the comparison of champion and shadow, from the log's rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from tagops.metrics import bootstrap_f1_difference, weighted_f1
from tagops.monitoring.shadow import compare_models, render_table
from tagops.predlog.log import PredictionLog
from tagops.predlog.schema import shadow_predictions
from tagops.predlog.writer import WriterOptions

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
LABELS = ["computer-vision", "mlops", "natural-language-processing", "other"]


def pair(i: int, champion: str, shadow: str, *, shadow_version: int = 2) -> dict[str, Any]:
    return {
        "prediction_id": f"{i:032x}",
        "created_at": T0 + timedelta(seconds=i),
        "model_version": 1,
        "tag": champion,
        "confidence": 0.6,
        "probabilities": {},
        "latency_ms": 5.0 + i % 3,
        "shadow_model_version": shadow_version,
        "shadow_model_uri": f"models:/tagops/{shadow_version}",
        "shadow_tag": shadow,
        "shadow_confidence": 0.9,
        "shadow_probabilities": {},
        "shadow_latency_ms": 1.0,
    }


def test_agreement_confidence_f1_margin_and_latency() -> None:
    rng = np.random.default_rng(0)
    truth = [LABELS[i] for i in rng.integers(0, 4, 200)]
    champion = [t if rng.random() < 0.5 else "other" for t in truth]  # right half the time
    shadow = [t if rng.random() < 0.9 else "mlops" for t in truth]  # right nine times in ten
    rows = [pair(i, c, s) for i, (c, s) in enumerate(zip(champion, shadow, strict=True))]
    feedback = {r["prediction_id"]: t for r, t in zip(rows[:150], truth[:150], strict=True)}
    (comparison,) = compare_models(rows, feedback, bootstrap_samples=500, seed=1)
    assert comparison["rows"] == 200 and comparison["feedback_rows"] == 150
    assert comparison["agreement"] == pytest.approx(
        np.mean([c == s for c, s in zip(champion, shadow, strict=True)])
    )
    assert comparison["f1"]["champion"]["f1"] == pytest.approx(weighted_f1(truth[:150], champion[:150]))
    assert comparison["f1"]["shadow"]["f1"] == pytest.approx(weighted_f1(truth[:150], shadow[:150]))
    low, high = comparison["f1_margin_ci95"]
    assert 0 < low <= comparison["f1_margin"] <= high
    assert comparison["confidence"]["shadow"]["mean"] == pytest.approx(0.9)
    assert comparison["latency_ms"]["champion"]["p50"] == pytest.approx(6.0)
    console = Console(record=True, width=200)
    console.print(render_table({"since": "a", "until": "b", "rows": 200, "comparisons": [comparison]}))
    text = console.export_text()
    assert "agreement" in text and "F1 margin" in text and "shadow v2" in text


def test_each_shadow_version_is_compared_on_its_own() -> None:
    rows = [pair(i, "mlops", "mlops", shadow_version=2 + i % 2) for i in range(10)]
    comparisons = compare_models(rows, {}, bootstrap_samples=100, seed=1)
    assert [c["shadow_version"] for c in comparisons] == [2, 3]
    assert all(
        c["agreement"] == 1.0 and c["f1_margin"] is None and c["feedback_rows"] == 0 for c in comparisons
    )


def test_the_paired_margin_interval_is_zero_for_identical_answers() -> None:
    truth = ["mlops", "other", "other", "computer-vision"] * 10
    predicted = ["mlops", "other", "mlops", "other"] * 10
    assert bootstrap_f1_difference(truth, predicted, predicted, samples=200, seed=3) == [0.0, 0.0]
    assert bootstrap_f1_difference([], [], [], samples=200, seed=3) is None


def test_the_log_pairs_champion_rows_with_their_shadow_rows(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", options=WriterOptions(flush_interval_s=0.05))
    store, shadow = log.writer, log.shadow_writer()
    store.start()
    shadow.start()
    ids = [uuid.uuid4().hex for _ in range(3)]
    base = {"request_id": None, "model_name": "tagops", "model_version": 1, "model_uri": "models:/tagops/1"}
    store.submit(
        [
            {
                **base,
                "id": pid,
                "created_at": T0 + timedelta(seconds=i),
                "title": "t",
                "description": "",
                "tag": "mlops",
                "confidence": 0.5,
                "abstained": False,
                "probabilities": {},
                "latency_ms": 2.0,
                "replica": "r",
            }
            for i, pid in enumerate(ids)
        ]
    )
    shadow.submit(
        [
            {
                "id": uuid.uuid4().hex,
                "prediction_id": pid,
                "created_at": T0,
                "model_name": "tagops",
                "model_version": 2,
                "model_uri": "models:/tagops/2",
                "tag": "other",
                "confidence": 0.7,
                "abstained": False,
                "probabilities": {},
                "latency_ms": 1.0,
                "replica": "r",
            }
            for pid in ids[:2]  # the third was never shadowed
        ]
    )
    assert store.flush() and shadow.flush()
    found = log.reader.read_shadow_pairs(since=T0, until=T0 + timedelta(minutes=1))
    assert [r["prediction_id"] for r in found] == ids[:2]
    assert {(r["tag"], r["shadow_tag"], r["shadow_model_version"]) for r in found} == {("mlops", "other", 2)}
    assert log.reader.count_rows(shadow_predictions) == 2
    assert log.reader.read_shadow_tags([*ids, "unknown"]) == {pid: "other" for pid in ids[:2]}
    shadow.stop()
    store.stop()
    log.dispose()


@pytest.mark.usefixtures("restore_process_state")
def test_the_cli_reports_an_empty_window_and_writes_json(tagops_home: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from tagops.cli import app

    output = tmp_path / "shadow.json"
    result = CliRunner().invoke(
        app,
        [
            "shadow",
            "report",
            "--since",
            "2026-11-01T00:00:00Z",
            "--until",
            "2026-11-02",
            "--output",
            str(output),
        ],
    )
    assert result.exit_code == 0, result.output
    written = json.loads(output.read_text(encoding="utf-8"))
    assert written["rows"] == 0 and written["comparisons"] == []
    assert written["since"].startswith("2026-11-01T00:00:00")
