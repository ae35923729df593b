"""The promotion gate (pure ``decide``) and the append-only history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tagops import LABELS
from tagops.config import GateConfig
from tagops.workloads.promote import GateDecision, append_history, decide, read_history

pytestmark = pytest.mark.unit

GATE = GateConfig(max_overall_f1_drop=0.01, max_class_f1_drop=0.05)
BASE = {"computer-vision": 0.80, "mlops": 0.70, "natural-language-processing": 0.85, "other": 0.60}


def report(overall: float, **class_f1: float) -> dict[str, Any]:
    per_class = {label: {"f1": class_f1.get(label.replace("-", "_"), BASE[label])} for label in LABELS}
    return {"overall": {"f1": overall}, "per_class": per_class}


def test_no_champion_promotes() -> None:
    decision = decide(report(0.4), None, GATE)
    assert decision == GateDecision(True, "no champion yet", 0.4, None, {})


def test_better_challenger_is_promoted() -> None:
    decision = decide(report(0.80, mlops=0.75), report(0.78), GATE)
    assert decision.promote
    assert "within the gate" in decision.reason
    assert decision.challenger_f1 == 0.80
    assert decision.champion_f1 == 0.78
    assert decision.class_f1_drops["mlops"] == pytest.approx(-0.05)


def test_small_drops_within_both_margins_are_promoted() -> None:
    decision = decide(report(0.775, other=0.56), report(0.78), GATE)
    assert decision.promote, decision.reason
    assert decision.class_f1_drops["other"] == pytest.approx(0.04)


def test_overall_drop_beyond_margin_is_rejected() -> None:
    decision = decide(report(0.75), report(0.78), GATE)
    assert not decision.promote
    assert "overall F1 falls by 0.0300" in decision.reason
    assert "(> 0.01)" in decision.reason


def test_class_drop_beyond_margin_is_rejected_naming_the_class() -> None:
    decision = decide(report(0.79, natural_language_processing=0.70), report(0.78), GATE)
    assert not decision.promote
    assert "'natural-language-processing'" in decision.reason
    assert "falls by 0.1500" in decision.reason
    assert decision.class_f1_drops["natural-language-processing"] == pytest.approx(0.15)


def test_the_worst_class_is_named() -> None:
    decision = decide(report(0.80, mlops=0.62, other=0.50), report(0.78), GATE)
    assert not decision.promote
    assert "'other'" in decision.reason  # drop 0.10 beats mlops' 0.08


def test_overall_check_comes_before_class_check() -> None:
    decision = decide(report(0.70, mlops=0.10), report(0.78), GATE)
    assert not decision.promote
    assert decision.reason.startswith("overall F1 falls")


def test_zero_margin_rejects_any_overall_loss() -> None:
    strict = GateConfig(max_overall_f1_drop=0.0, max_class_f1_drop=1.0)
    assert decide(report(0.78), report(0.78), strict).promote
    assert not decide(report(0.7799), report(0.78), strict).promote


def test_classes_missing_from_the_champion_are_ignored() -> None:
    champion = report(0.78)
    del champion["per_class"]["other"]
    decision = decide(report(0.80, other=0.0), champion, GATE)
    assert decision.promote
    assert "other" not in decision.class_f1_drops


def test_class_drop_exactly_at_the_margin_is_promoted() -> None:
    decision = decide(report(0.78, mlops=0.65), report(0.78), GATE)
    assert decision.class_f1_drops["mlops"] == 0.05
    assert decision.promote


def test_overall_drop_exactly_at_the_margin_is_promoted() -> None:
    gate = GateConfig(max_overall_f1_drop=0.05, max_class_f1_drop=1.0)
    assert decide(report(0.85), report(0.90), gate).promote


def test_history_round_trip_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "registry" / "history.jsonl"
    assert read_history(path) == []
    first = {"action": "promote", "version": 1, "champion": 1, "previous_champion": None}
    second = {"action": "reject", "version": 2, "champion": 1, "previous_champion": 1, "when": Path("x")}
    append_history(path, first)
    content_after_first = path.read_bytes()
    append_history(path, second)
    assert path.read_bytes().startswith(content_after_first)  # earlier lines are never rewritten
    assert read_history(path) == [first, {**second, "when": "x"}]
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert all(json.loads(line) for line in lines)


def test_read_history_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"action": "promote"}\n\n  \n{"action": "rollback"}\n')
    assert [r["action"] for r in read_history(path)] == ["promote", "rollback"]


def scored(truth: list[str], predicted: list[str]) -> dict[str, Any]:
    """A report as evaluate.compute_report writes it: scores plus the rows behind them."""
    from tagops.metrics import classification_scores

    return {
        **classification_scores(truth, predicted, LABELS),
        "rows": {"truth": truth, "predicted": predicted},
    }


def holdout_like() -> tuple[list[str], list[str]]:
    """A 16-item mlops class among 160 rows, with the champion right on 15 mlops items."""
    truth = ["mlops"] * 16 + ["computer-vision"] * 60 + ["natural-language-processing"] * 60 + ["other"] * 24
    champion = list(truth)
    champion[0] = "other"
    for i in (20, 21, 80, 81, 82, 140):  # a few errors elsewhere
        champion[i] = "other" if truth[i] != "other" else "mlops"
    return truth, champion


def test_a_two_item_swing_in_a_small_class_is_noise_not_a_refusal() -> None:
    truth, champion = holdout_like()
    challenger = list(champion)
    challenger[1] = challenger[2] = "other"  # two more mlops items missed ...
    for i in (20, 21, 80, 81):  # ... and four errors elsewhere fixed
        challenger[i] = truth[i]
    a, b = scored(truth, challenger), scored(truth, champion)
    drop = b["per_class"]["mlops"]["f1"] - a["per_class"]["mlops"]["f1"]
    assert drop > 0.05
    decision = decide(a, b, GATE)
    assert decision.promote, decision.reason
    assert decision.class_drop_confidence is not None
    assert decision.class_drop_confidence["mlops"] < 0.95
    assert "paired resamples" in decision.reason
    # The strict rule (no resampling) refuses the same challenger.
    strict = decide(
        a, b, GateConfig(max_overall_f1_drop=0.01, max_class_f1_drop=0.05, class_drop_confidence=None)
    )
    assert not strict.promote and "'mlops'" in strict.reason


def test_a_class_that_really_collapses_is_refused_with_its_confidence() -> None:
    truth, champion = holdout_like()
    challenger = list(champion)
    for i in range(1, 9):  # half of mlops now missed
        challenger[i] = "other"
    for i in (20, 21, 80, 81, 82, 140):
        challenger[i] = truth[i]
    lenient_overall = GateConfig(max_overall_f1_drop=0.05, max_class_f1_drop=0.05)
    decision = decide(scored(truth, challenger), scored(truth, champion), lenient_overall)
    assert not decision.promote
    assert "'mlops'" in decision.reason and "of paired resamples" in decision.reason
    assert decision.class_drop_confidence is not None and decision.class_drop_confidence["mlops"] >= 0.95


def test_reports_on_different_rows_fall_back_to_the_strict_rule() -> None:
    truth, champion = holdout_like()
    challenger = list(champion)
    challenger[1] = challenger[2] = "other"
    for i in (20, 21, 80, 81):
        challenger[i] = truth[i]
    other_rows = scored(truth, challenger)
    other_rows["rows"] = {"truth": list(reversed(truth)), "predicted": list(reversed(challenger))}
    decision = decide(other_rows, scored(truth, champion), GATE)
    assert not decision.promote and decision.class_drop_confidence is None


def test_same_reports_same_verdict() -> None:
    truth, champion = holdout_like()
    challenger = list(champion)
    challenger[1] = challenger[2] = "other"
    first = decide(scored(truth, challenger), scored(truth, champion), GATE)
    again = decide(scored(truth, challenger), scored(truth, champion), GATE)
    assert first == again
