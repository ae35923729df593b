"""The JSON files users and their tools read keep their shape: every key, at every level, is pinned here.

The reports are typed in the code (``EvalReport`` and its ``RobustnessReport``, ``MonitorSummary``,
``GateDecision``, ``RetrainResult``); what they write must not change when the types or the modules around
them do.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from tagops import LABELS
from tagops.config import EvalConfig, GateConfig, RulesParams
from tagops.data.clean import build_text
from tagops.data.robustness import TRANSFORMS
from tagops.inference.predictor import Predictor
from tagops.metrics import compute_report
from tagops.models.rules import RulesModel
from tagops.monitoring.drift import DriftReport, DriftTest
from tagops.workloads.evaluate import evaluate_robustness
from tagops.workloads.monitor import Window, summarize
from tagops.workloads.promote import decide
from tagops.workloads.retrain import RetrainResult
from tagops.workloads.retrain_policy import RetrainDecision

from .conftest import make_projects

pytestmark = pytest.mark.unit


def shape(value: Any) -> Any:
    """The keys of nested dicts (a list shows its first item's shape); leaves become their type name."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """An evaluation report as ``tagops evaluate`` writes it (JSON round trip)."""
    truth = [LABELS[i % 4] for i in range(40)]
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4), size=40)
    texts = [f"project number {i} with words" for i in range(40)]
    cfg = EvalConfig(bootstrap_samples=50, threshold=0.3)
    computed = compute_report(truth, proba, texts, LABELS, cfg, raw=proba)
    loaded: dict[str, Any] = json.loads(json.dumps(computed, indent=2, sort_keys=True))  # as write_report
    return loaded


def test_the_evaluation_report_keeps_its_keys(report: dict[str, Any]) -> None:
    scores = {"precision": "float", "recall": "float", "f1": "float", "num_samples": "int"}
    assert set(report) == {
        "overall",
        "per_class",
        "slices",
        "calibration",
        "confusion_matrix",
        "threshold",
        "raw",
        "rows",
    }
    assert shape(report["overall"]) == {
        **scores,
        "macro_f1": "float",
        "accuracy": "float",
        "f1_ci95": ["float"],
        "abstained": "int",
    }
    assert shape(report["per_class"]) == dict.fromkeys(LABELS, scores)
    assert set(report["slices"]) == {"short_text", "nlp_llm"}
    assert set(report["slices"]["short_text"]) == set(scores)
    calibration = {
        "ece": "float",
        "ece_ci95": ["float"],
        "bins": [
            {"low": "float", "high": "float", "count": "int", "accuracy": "float", "confidence": "float"}
        ],
    }
    assert shape(report["calibration"]) == calibration
    assert shape(report["raw"]) == {
        "f1": "float",
        "macro_f1": "float",
        "per_class_f1": dict.fromkeys(LABELS, "float"),
        "calibration": calibration,
    }
    assert shape(report["confusion_matrix"]) == {"labels": ["str"], "matrix": [["int"]]}
    assert shape(report["rows"]) == {"truth": ["str"], "predicted": ["str"]}


def test_the_robustness_report_keeps_its_keys() -> None:
    frame = make_projects(4)
    texts = [build_text(t, d) for t, d in zip(frame.title, frame.description, strict=True)]
    predictor = Predictor(RulesModel(RulesParams(min_term_count=2)).fit(texts, frame.tag.tolist()))
    holdout = make_projects(1, start_id=900, offset=40)
    challenge = holdout.assign(style=["package", "package", "readme", "readme"])
    cfg = EvalConfig(bootstrap_samples=50, threshold=0.3)
    computed = {"robustness": evaluate_robustness(predictor, holdout, cfg, challenge=challenge)}
    loaded = json.loads(json.dumps(computed, indent=2, sort_keys=True))["robustness"]  # as write_report
    assert set(loaded) == {"seed", "slices", "worst_slice"}
    assert set(loaded["slices"]) == {
        "holdout",
        *TRANSFORMS,
        "challenge",
        "challenge.package",
        "challenge.readme",
    }
    assert isinstance(loaded["worst_slice"], str) and isinstance(loaded["seed"], int)
    assert shape(loaded["slices"]["challenge.readme"]) == {
        "source": "str",
        "transform": "NoneType",
        "style": "str",
        "num_samples": "int",
        "dropped": "int",
        "f1": "float",
        "f1_ci95": ["float"],
        "macro_f1": "float",
        "per_class_f1": dict.fromkeys(LABELS, "float"),
        "abstained": "int",
        "ece": "float",
    }
    assert shape(loaded["slices"]["terse"])["transform"] == "str"


def test_a_gate_decision_keeps_its_keys(report: dict[str, Any]) -> None:
    decision = asdict(decide(report, report, GateConfig(bootstrap_samples=100)))  # type: ignore[arg-type]
    assert set(decision) == {
        "promote",
        "reason",
        "challenger_f1",
        "champion_f1",
        "class_f1_drops",
        "class_drop_confidence",
    }


def test_the_monitor_summary_keeps_its_keys() -> None:
    now = datetime.now(UTC)
    test = DriftTest("oov", "data", "ks", 0.1, 0.5, p_adjusted=0.5)
    report = DriftReport(
        num_rows=3,
        alpha=0.05,
        correction="holm",
        tests=[test],
        drift_alarm=False,
        performance=None,
        performance_alarm=False,
        window={"oov_token_rate": 0.1},
    )
    window = Window(now, now, ["a b"], ["mlops"], [0.9])
    summary = json.loads(json.dumps(summarize(report, window, model_uri="models:/tagops/1", model_version=1)))
    assert set(summary) == {
        "kind",
        "created_at",
        "since",
        "until",
        "model_uri",
        "model_version",
        "num_rows",
        "alarm",
        "drift_alarm",
        "performance_alarm",
        "drifted",
        "alpha",
        "correction",
        "skipped",
        "tests",
        "performance",
        "window",
    }
    assert set(summary["tests"][0]) == {
        "name",
        "kind",
        "method",
        "statistic",
        "p_value",
        "p_adjusted",
        "drift",
        "skipped",
        "detail",
    }


def test_the_retrain_result_keeps_its_keys(report: dict[str, Any]) -> None:
    result = RetrainResult(
        RetrainDecision(True, "manual"),
        counts={"feedback": 3, "train": 2, "recent": 1},
        challenger_version=2,
        champion_version=1,
        reports={"champion_holdout": report, "challenger_holdout": report, "challenger_recent": None},
        gate={"promote": True, "reason": "ok"},
        promoted=True,
    )
    data = json.loads(json.dumps(result.to_json()))
    assert set(data) == {
        "decision",
        "counts",
        "challenger_version",
        "champion_version",
        "reports",
        "gate",
        "promoted",
        "reload",
        "seconds",
    }
    assert data["decision"] == {"run": True, "reason": "manual"}
    assert shape(data["reports"]["champion_holdout"]) == {"f1": "float", "f1_ci95": ["float"], "rows": "int"}
    assert set(data["reports"]) == {"champion_holdout", "challenger_holdout"}  # not evaluated: left out
