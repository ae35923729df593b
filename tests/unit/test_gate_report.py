from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tagops.config import GateConfig
from tagops.workloads.gate import GateComparison, gate_markdown, write_gate_outputs
from tagops.workloads.promote import decide

pytestmark = pytest.mark.unit


def report(f1: float, per_class: dict[str, float]) -> Any:
    return {
        "overall": {"f1": f1, "f1_ci95": [f1 - 0.02, f1 + 0.02], "num_samples": 191},
        "per_class": {label: {"f1": value} for label, value in per_class.items()},
    }


def comparison(challenger: Any, champion: Any, behaviour: Any = None) -> GateComparison:
    decision = decide(challenger, champion, GateConfig(class_drop_confidence=None), behaviour)
    return GateComparison(decision, "models:/tagops@champion", "prod/", challenger, champion, behaviour)


def test_a_passing_gate_reads_as_a_comment_with_both_models_and_every_tag() -> None:
    result = comparison(
        report(0.95, {"mlops": 0.9, "other": 0.8}), report(0.94, {"mlops": 0.88, "other": 0.82})
    )
    text = gate_markdown(result)
    assert text.startswith("### tagops gate: the challenger passes the gate")
    assert "| challenger | `models:/tagops@champion` | 0.9500 (0.930–0.970) | 191 |" in text
    assert "| champion | `prod/` | 0.9400 (0.920–0.960) | 191 |" in text
    assert "| mlops | 0.9000 | 0.8800 | +0.0200 |" in text
    assert "| other | 0.8000 | 0.8200 | -0.0200 |" in text
    assert result.to_json()["passed"] is True


def test_a_refusal_says_why_and_lists_failed_behavioural_cases(tmp_path: Path) -> None:
    behaviour = {
        "passed": False,
        "failed": [
            {"kind": "invariance", "name": "typos", "text": "pytorhc", "expected": "other", "got": "mlops"}
        ],
        "counts": {"invariance": {"cases": 4, "failed": 1}},
    }
    result = comparison(report(0.95, {"mlops": 0.9}), report(0.94, {"mlops": 0.9}), behaviour)
    text = gate_markdown(result)
    assert "is refused by the gate" in text and "behaviour: invariance case 'typos'" in text
    assert "Behavioural cases passed: invariance 3/4." in text
    assert '- invariance `typos`: "pytorhc" → mlops (expected other)' in text
    paths = write_gate_outputs(result, tmp_path / "gate")
    verdict = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert verdict["passed"] is False and verdict["champion"]["uri"] == "prod/"
    assert json.loads(paths["challenger"].read_text(encoding="utf-8"))["overall"]["f1"] == 0.95
    assert paths["markdown"].read_text(encoding="utf-8") == text
