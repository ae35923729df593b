"""The promotion gate between any two models, read-only: the check a pull request runs before it merges.

    tagops gate --challenger models:/tagops@champion --champion production-champion/ --output reports/pr

Both models answer the same holdout; :func:`tagops.workloads.promote.decide` (the rule ``tagops promote``
applies, with the same paired bootstrap and behavioural cases) gives the verdict. Nothing in a registry
changes and nothing is recorded in the promotion history: the challenger may come from a branch's
embedded store and the champion from the team's registry (pulled into a folder), so the verdict is also
written as Markdown tables for a pull-request comment.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from tagops.config import EvalConfig, GateConfig
    from tagops.metrics import EvalReport
    from tagops.settings import Settings
    from tagops.workloads.behaviour import BehaviourReport
    from tagops.workloads.promote import GateDecision


@dataclass(frozen=True)
class GateComparison:
    """The verdict, and the two reports and behavioural check behind it."""

    decision: GateDecision
    challenger_uri: str
    champion_uri: str
    challenger: EvalReport
    champion: EvalReport
    behaviour: BehaviourReport | None

    def to_json(self) -> dict[str, Any]:
        """The verdict and headline scores (the full reports are written beside it)."""
        return {
            "passed": self.decision.promote,
            "reason": self.decision.reason,
            "challenger": {"uri": self.challenger_uri, **_headline(self.challenger)},
            "champion": {"uri": self.champion_uri, **_headline(self.champion)},
            "decision": asdict(self.decision),
            "behaviour": self.behaviour,
        }


def _headline(report: EvalReport) -> dict[str, Any]:
    overall = report["overall"]
    return {"f1": overall["f1"], "f1_ci95": overall.get("f1_ci95"), "rows": overall["num_samples"]}


def compare_models(
    challenger_uri: str,
    champion_uri: str,
    settings: Settings,
    *,
    holdout: pd.DataFrame,
    eval_cfg: EvalConfig,
    gate: GateConfig,
) -> GateComparison:
    """Evaluate both models (a ``models:/`` URI or a saved model folder each) on ``holdout`` and gate."""
    from tagops.inference.loading import load_predictor
    from tagops.workloads.behaviour import check_behaviour
    from tagops.workloads.evaluate import evaluate_predictor
    from tagops.workloads.promote import decide

    challenger = load_predictor(challenger_uri, settings, threshold=eval_cfg.threshold)
    champion = load_predictor(champion_uri, settings, threshold=eval_cfg.threshold)
    challenger_report = evaluate_predictor(challenger, holdout, eval_cfg)
    champion_report = evaluate_predictor(champion, holdout, eval_cfg)
    behaviour = check_behaviour(challenger) if gate.behaviour else None
    return GateComparison(
        decide(challenger_report, champion_report, gate, behaviour),
        challenger_uri,
        champion_uri,
        challenger_report,
        champion_report,
        behaviour,
    )


def _interval(scores: Any) -> str:
    low, high = scores.get("f1_ci95") or (None, None)
    return "" if low is None else f" ({low:.3f}–{high:.3f})"


def gate_markdown(comparison: GateComparison) -> str:
    """The verdict and the per-class table as Markdown (a pull-request comment)."""
    decision = comparison.decision
    verdict = "passes" if decision.promote else "is refused by"
    lines = [
        f"### tagops gate: the challenger {verdict} the gate",
        "",
        f"{decision.reason}",
        "",
        "| | model | holdout F1 (95 % CI) | rows |",
        "| --- | --- | --- | --- |",
    ]
    for name, uri, report in (
        ("challenger", comparison.challenger_uri, comparison.challenger),
        ("champion", comparison.champion_uri, comparison.champion),
    ):
        overall = report["overall"]
        lines.append(
            f"| {name} | `{uri}` | {overall['f1']:.4f}{_interval(overall)} | {overall['num_samples']} |"
        )
    lines += ["", "| tag | challenger F1 | champion F1 | change |", "| --- | --- | --- | --- |"]
    for label, scores in comparison.challenger["per_class"].items():
        theirs = comparison.champion["per_class"].get(label)
        if theirs is None:
            continue
        change = float(scores["f1"]) - float(theirs["f1"])
        lines.append(f"| {label} | {scores['f1']:.4f} | {theirs['f1']:.4f} | {change:+.4f} |")
    behaviour = comparison.behaviour
    if behaviour is not None:
        counts = ", ".join(
            f"{kind} {c['cases'] - c['failed']}/{c['cases']}" for kind, c in behaviour["counts"].items()
        )
        lines += ["", f"Behavioural cases passed: {counts}."]
        for failure in behaviour["failed"][:10]:
            lines.append(
                f'- {failure["kind"]} `{failure["name"]}`: "{failure["text"]}" → {failure["got"]}'
                f" (expected {failure['expected']})"
            )
    return "\n".join(lines) + "\n"


def write_gate_outputs(comparison: GateComparison, output_dir: Path) -> dict[str, Path]:
    """``gate.json`` (verdict), ``gate.md`` (the comment) and both evaluation reports in ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": output_dir / "gate.json",
        "markdown": output_dir / "gate.md",
        "challenger": output_dir / "challenger.json",
        "champion": output_dir / "champion.json",
    }
    paths["json"].write_text(json.dumps(comparison.to_json(), indent=2, default=str), encoding="utf-8")
    paths["markdown"].write_text(gate_markdown(comparison), encoding="utf-8")
    for name in ("challenger", "champion"):
        report = getattr(comparison, name)
        paths[name].write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return paths
