"""The promotion gate (pure ``decide``, behavioural cases first), ``promote`` and the append-only history."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tagops import LABELS
from tagops.config import GateConfig
from tagops.config.training import BEHAVIOUR_KINDS
from tagops.workloads.behaviour import BehaviourReport, check_behaviour
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


# ----------------------------------------------------------------------------------- behaviour
def behaviour(**wrong: str) -> BehaviourReport:
    """The behavioural report of a model right on every case except the texts of the named cases."""
    from tests.unit.test_behaviour import FakePredictor, text_of

    return check_behaviour(
        FakePredictor({text_of(name.replace("_", "-")): tag for name, tag in wrong.items()})
    )


def test_a_challenger_failing_a_minimum_functionality_case_is_refused_naming_it() -> None:
    decision = decide(report(0.90), report(0.78), GATE, behaviour(rl_atari="computer-vision"))
    assert not decision.promote
    assert decision.reason == (
        "behaviour: minimum_functionality case 'rl-atari' "
        "('Reinforcement learning agents for Atari games.'): got 'computer-vision', expected 'other'"
    )
    # The scores are still compared and kept as evidence.
    assert (decision.challenger_f1, decision.champion_f1) == (0.90, 0.78)
    assert decision.class_f1_drops["mlops"] == pytest.approx(0.0)


def test_behaviour_refuses_even_without_a_champion() -> None:
    decision = decide(report(0.9), None, GATE, behaviour(registry_tracker="natural-language-processing"))
    assert not decision.promote and "'registry-tracker'" in decision.reason


def test_a_passing_behaviour_report_leaves_the_scores_to_decide() -> None:
    passed = behaviour()
    assert decide(report(0.80), report(0.78), GATE, passed) == decide(report(0.80), report(0.78), GATE)
    assert not decide(report(0.70), report(0.78), GATE, passed).promote


def test_the_gate_config_lists_which_kinds_refuse() -> None:
    failing = behaviour(revolutionized_disrupted="mlops")
    assert not decide(report(0.8), report(0.78), GATE, failing).promote  # default: every kind refuses
    only_minimum = GateConfig(behaviour=["minimum_functionality"])  # type: ignore[list-item]
    assert decide(report(0.8), report(0.78), only_minimum, failing).promote
    off = GateConfig(behaviour=[])  # type: ignore[arg-type]
    assert decide(report(0.8), report(0.78), off, behaviour(rl_atari="mlops")).promote


def test_the_behaviour_field_defaults_to_every_kind_and_refuses_unknown_or_repeated_kinds() -> None:
    assert GateConfig().behaviour == BEHAVIOUR_KINDS
    assert GateConfig.model_validate({"behaviour": []}).behaviour == ()
    with pytest.raises(ValueError, match="behaviour") as unknown:
        GateConfig.model_validate({"behaviour": ["minimum_functionality", "invariant"]})
    assert "invariant" in str(unknown.value)
    with pytest.raises(ValueError, match="each behaviour kind may appear once"):
        GateConfig.model_validate({"behaviour": ["invariance", "invariance"]})
    with pytest.raises(ValueError, match="behavior"):
        GateConfig.model_validate({"behavior": []})  # a misspelt key fails too


def test_the_shipped_configs_gate_on_every_kind(tmp_path: Path) -> None:
    from tagops.config import PipelineConfig, RetrainConfig, load_config

    configs = Path(__file__).resolve().parents[2] / "configs"
    assert load_config(PipelineConfig, configs / "pipeline.yaml").gate.behaviour == BEHAVIOUR_KINDS
    loop = load_config(RetrainConfig, configs / "loop.yaml")
    assert loop.gate.behaviour == BEHAVIOUR_KINDS
    assert loop.recent_gate.behaviour == () == RetrainConfig().recent_gate.behaviour
    path = tmp_path / "pipeline.yaml"
    path.write_text("gate: {behaviour: [directional]}\n")
    assert load_config(PipelineConfig, path).gate.behaviour == ("directional",)


class FakeRegistry:
    """What the gate uses of :class:`tagops.registry.client.Registry`, in memory."""

    name = "tagops"

    def __init__(self, root: Path, **aliases: int) -> None:
        self.root = root
        self.aliases = dict(aliases)
        self.tags: dict[int, dict[str, str]] = {}

    def alias_version(self, alias: str) -> int | None:
        return self.aliases.get(alias)

    def set_alias(self, alias: str, version: int) -> None:
        self.aliases[alias] = version

    def download(self, version: int) -> Path:
        folder = self.root / str(version)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def set_version_tags(self, version: int, tags: dict[str, Any]) -> None:
        self.tags.setdefault(version, {}).update({k: str(v) for k, v in tags.items()})

    @contextlib.contextmanager
    def lease(self, purpose: str) -> Iterator[None]:  # one process: the file lock is the lock
        yield


@pytest.fixture
def gate_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A registry with champion 1 and challenger 2; holdout F1 0.78 and 0.90; version 2's answers settable.

    The holdout evaluation is replaced by fixed reports; the behavioural check runs for real on a fake
    predictor loaded (by the gate) from the version's folder.
    """
    from tagops.inference.predictor import Predictor
    from tagops.workloads import promote as promote_module
    from tests.unit.test_behaviour import FakePredictor

    world: dict[str, Any] = {"wrong": {}, "loaded": []}
    scores = {1: report(0.78), 2: report(0.90)}

    def evaluate(registry: Any, version: int, holdout: Any, cfg: Any) -> dict[str, Any]:
        return scores[version]

    def load(directory: Path, **kwargs: Any) -> FakePredictor:
        world["loaded"].append(directory.name)
        return FakePredictor(world["wrong"] if directory.name == "2" else {})

    monkeypatch.setattr(promote_module, "_evaluate_version", evaluate)
    monkeypatch.setattr(Predictor, "from_directory", load)
    world["registry"] = FakeRegistry(tmp_path / "models", champion=1, challenger=2)
    world["history"] = tmp_path / "history.jsonl"
    return world


def run_gate(world: dict[str, Any], gate: GateConfig = GATE) -> GateDecision:
    from tagops.config import EvalConfig
    from tagops.workloads.promote import promote

    return promote(
        world["registry"], holdout=None, eval_cfg=EvalConfig(), gate=gate, history=world["history"]
    )  # type: ignore[arg-type]


def test_promote_refuses_a_better_challenger_that_fails_a_case_and_records_why(
    gate_world: dict[str, Any],
) -> None:
    from tests.unit.test_behaviour import text_of

    gate_world["wrong"] = {text_of("detection-satellite"): "other"}
    decision = run_gate(gate_world)
    assert not decision.promote and decision.challenger_f1 == 0.90
    assert "minimum_functionality case 'detection-satellite'" in decision.reason
    assert "'Object detection in satellite images.'" in decision.reason
    assert "got 'other', expected 'computer-vision'" in decision.reason
    registry = gate_world["registry"]
    assert registry.aliases["champion"] == 1
    assert registry.tags[2]["gate.decision"] == "reject"
    assert registry.tags[2]["gate.behaviour"] == "failed: detection-satellite"
    assert registry.tags[2]["gate.reason"] == decision.reason
    (record,) = read_history(gate_world["history"])
    assert record["action"] == "reject" and record["reason"] == decision.reason
    assert record["gate"]["behaviour"] == list(BEHAVIOUR_KINDS)
    assert record["behaviour"]["passed"] is False
    assert record["behaviour"]["failed"] == [
        {
            "kind": "minimum_functionality",
            "name": "detection-satellite",
            "text": "Object detection in satellite images.",
            "expected": "computer-vision",
            "got": "other",
        }
    ]
    assert record["behaviour"]["counts"]["minimum_functionality"]["failed"] == 1
    assert gate_world["loaded"] == ["2"]  # only the challenger is checked


def test_promote_moves_the_champion_when_scores_and_behaviour_pass(gate_world: dict[str, Any]) -> None:
    decision = run_gate(gate_world)
    assert decision.promote, decision.reason
    registry = gate_world["registry"]
    assert registry.aliases["champion"] == 2
    assert registry.tags[2]["gate.behaviour"] == "passed"
    (record,) = read_history(gate_world["history"])
    assert record["action"] == "promote" and record["behaviour"]["passed"] is True


def test_kinds_left_off_the_gate_are_recorded_but_do_not_refuse(gate_world: dict[str, Any]) -> None:
    from tests.unit.test_behaviour import text_of

    gate_world["wrong"] = {text_of("cnn-text-image"): "computer-vision"}
    decision = run_gate(gate_world, GateConfig(behaviour=["minimum_functionality"]))  # type: ignore[list-item]
    assert decision.promote, decision.reason
    assert gate_world["registry"].tags[2]["gate.behaviour"] == "failed: cnn-text-image"
    (record,) = read_history(gate_world["history"])
    assert record["behaviour"]["failed"][0]["kind"] == "directional"


def test_an_empty_behaviour_list_skips_the_check(gate_world: dict[str, Any]) -> None:
    from tests.unit.test_behaviour import text_of

    gate_world["wrong"] = {text_of("nlp"): "mlops"}
    decision = run_gate(gate_world, GateConfig(behaviour=[]))  # type: ignore[arg-type]
    assert decision.promote
    assert gate_world["loaded"] == []
    assert gate_world["registry"].tags[2]["gate.behaviour"] == "not checked"
    (record,) = read_history(gate_world["history"])
    assert record["behaviour"] is None


def test_the_retrain_gate_applies_the_same_rule_and_records_the_report(
    gate_world: dict[str, Any], tmp_path: Path
) -> None:
    from types import SimpleNamespace

    import pandas as pd

    from tagops.config import RetrainConfig
    from tagops.workloads.retrain import evaluation_stage, record_promotion
    from tests.unit.test_behaviour import text_of

    gate_world["wrong"] = {text_of("forecasting"): "mlops"}
    cfg = RetrainConfig()
    rows = pd.DataFrame({"title": ["x"], "description": [""], "tag": ["other"]})
    evaluation = evaluation_stage(
        None,  # type: ignore[arg-type]
        cfg,
        2,
        holdout=rows,
        recent=rows,
        registry=gate_world["registry"],
    )
    gate = evaluation["gate"]
    assert gate["promote"] is False
    assert gate["holdout"]["promote"] is False and gate["recent"]["promote"] is True
    assert gate["reason"].startswith("holdout: behaviour: minimum_functionality case 'forecasting'")
    assert gate["reason"].count("behaviour:") == 1  # the recent-window gate does not repeat it
    assert gate["behaviour"]["failed"][0]["name"] == "forecasting"
    settings = SimpleNamespace(promotion_history=tmp_path / "retrain-history.jsonl")
    promoted = record_promotion(
        gate_world["registry"],
        settings,  # type: ignore[arg-type]
        challenger=2,
        champion=1,
        gate=gate,
        cfg=cfg,
        trigger="manual",
        holdout_sha256=None,
    )
    assert promoted is False
    (record,) = read_history(settings.promotion_history)
    assert record["action"] == "reject" and record["trigger"] == "manual"
    assert record["behaviour"] == gate["behaviour"]
    assert gate_world["registry"].tags[2]["gate.behaviour"] == "failed: forecasting"


def test_rollback_restores_the_champion_a_promotion_replaced(gate_world: dict[str, Any]) -> None:
    from tagops.errors import RegistryError
    from tagops.workloads.promote import rollback

    assert run_gate(gate_world).promote
    registry = gate_world["registry"]
    assert rollback(registry, history=gate_world["history"]) == (2, 1)
    assert registry.aliases["champion"] == 1 and registry.tags[2]["rolled_back"] == "true"
    last = read_history(gate_world["history"])[-1]
    assert (last["action"], last["previous_champion"], last["champion"]) == ("rollback", 2, 1)
    with pytest.raises(RegistryError, match="champion version 1 has no previous champion"):
        rollback(registry, history=gate_world["history"])
