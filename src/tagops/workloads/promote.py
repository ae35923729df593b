"""The promotion gate, promotion and rollback.

``tagops promote`` evaluates ``challenger`` and ``champion`` on the holdout and moves ``champion`` only if
overall F1 falls by no more than a margin and no class F1 falls by more than another, and the challenger
passes the behavioural cases of the kinds the gate lists (:mod:`tagops.workloads.behaviour`). Every
decision is appended to a JSON-lines history (MLflow keeps no alias history) and tagged on the model
version.
``tagops rollback`` restores the champion that preceded the current one.

Promotion is atomic against other promotions, retrains and rollbacks of the same home: a file lock beside
the history is held while the champion is read again, the history line is written and fsynced, and the
alias moves. A gate decided against a champion that has moved since is refused (compare-and-set), so two
concurrent promotions leave one champion and a history that says why the other was refused. The history
line goes to disk before the alias moves: a crash between the two leaves a recorded promotion whose alias
did not move (the alias is the truth; ``rollback`` and the next ``promote`` read it). A line torn by a
crash is skipped with a warning naming the file and line, and the next record starts on a line of its own.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.errors import RegistryError

if TYPE_CHECKING:
    import pandas as pd

    from tagops.config import EvalConfig, GateConfig
    from tagops.metrics import EvalReport
    from tagops.registry.client import Registry
    from tagops.workloads.behaviour import BehaviourReport


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateDecision:
    """The gate's verdict with the evidence behind it."""

    promote: bool
    reason: str
    challenger_f1: float
    champion_f1: float | None
    class_f1_drops: dict[str, float]
    #: For classes beyond the class margin: share of paired resamples in which their F1 falls.
    class_drop_confidence: dict[str, float] | None = None


def decide(
    challenger: EvalReport,
    champion: EvalReport | None,
    gate: GateConfig,
    behaviour: BehaviourReport | None = None,
) -> GateDecision:
    """Compare two evaluation reports on the same data; pure, so the rule is tested on its own.

    ``behaviour`` (the challenger's :func:`tagops.workloads.behaviour.check_behaviour` report) is
    applied first: a failing case of a kind in ``gate.behaviour`` refuses the challenger whatever its
    scores, and the reason names the case; the scores are still compared and kept as evidence.
    """
    from tagops.workloads.behaviour import behaviour_refusal

    scores = _compare_scores(challenger, champion, gate)
    refusal = None if behaviour is None else behaviour_refusal(behaviour, gate.behaviour)
    return scores if refusal is None else replace(scores, promote=False, reason=refusal)


def _compare_scores(challenger: EvalReport, champion: EvalReport | None, gate: GateConfig) -> GateDecision:
    challenger_f1 = float(challenger["overall"]["f1"])
    if champion is None:
        return GateDecision(True, "no champion yet", challenger_f1, None, {})
    champion_f1 = float(champion["overall"]["f1"])
    drops = {
        label: round(float(champion["per_class"][label]["f1"]) - float(scores["f1"]), 6)
        for label, scores in challenger["per_class"].items()
        if label in champion["per_class"]
    }
    overall_drop = round(champion_f1 - challenger_f1, 6)  # 0.90 - 0.85 is 0.05000000000000004
    if overall_drop > gate.max_overall_f1_drop:
        return GateDecision(
            False,
            f"overall F1 falls by {overall_drop:.4f} (> {gate.max_overall_f1_drop})",
            challenger_f1,
            champion_f1,
            drops,
        )
    beyond = sorted(
        (label for label in drops if drops[label] > gate.max_class_f1_drop), key=lambda k: -drops[k]
    )
    confidence = _class_drop_confidence(challenger, champion, gate, beyond)
    for label in beyond:
        if confidence is None or confidence[label] >= float(gate.class_drop_confidence or 0.0):
            shown = "" if confidence is None else f", in {confidence[label]:.0%} of paired resamples"
            return GateDecision(
                False,
                f"F1 of '{label}' falls by {drops[label]:.4f} (> {gate.max_class_f1_drop}){shown}",
                challenger_f1,
                champion_f1,
                drops,
                confidence,
            )
    noise = ""
    if beyond and confidence is not None:
        noise = "; " + ", ".join(
            f"'{label}' falls by {drops[label]:.4f} in only {confidence[label]:.0%} of paired resamples"
            f" (< {gate.class_drop_confidence:.0%})"
            for label in beyond
        )
    return GateDecision(
        True,
        f"overall F1 {challenger_f1:.4f} vs champion {champion_f1:.4f}, within the gate{noise}",
        challenger_f1,
        champion_f1,
        drops,
        confidence,
    )


def _class_drop_confidence(
    challenger: EvalReport, champion: EvalReport, gate: GateConfig, labels: list[str]
) -> dict[str, float] | None:
    """Paired-bootstrap share of resamples in which each class in ``labels`` falls; ``None``: not usable.

    Usable when the gate asks for it and both reports carry their rows with the same truth (the same
    evaluation rows in the same order).
    """
    if not labels or gate.class_drop_confidence is None:
        return None
    rows_a, rows_b = challenger.get("rows"), champion.get("rows")
    if not rows_a or not rows_b or rows_a.get("truth") != rows_b.get("truth"):
        return None
    from tagops.metrics import class_f1_drop_probability

    shares = class_f1_drop_probability(
        rows_b["truth"],
        rows_b["predicted"],
        rows_a["predicted"],
        samples=gate.bootstrap_samples,
        seed=gate.seed,
    )
    return {label: round(shares.get(label, 1.0), 4) for label in labels}


@contextmanager
def promotion_lock(history: Path, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the promotion lock of ``history`` (a file lock beside it, across processes) for the block.

    Promotions through a shared registry also hold the registry's ``promotion`` lease
    (:meth:`tagops.registry.client.Registry.lease`), so machines that share a team MLflow server, each
    with its own history file, still take turns.
    """
    from filelock import FileLock

    history.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(history.with_name(history.name + ".lock")), timeout=timeout_s, thread_local=False):
        yield


def append_history(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it; the file is never rewritten (call under :func:`promotion_lock`).

    A line left without its newline by a crash is ended first, so the new record is a line of its own.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    with path.open("a+b") as handle:  # writes always go to the end; reads may look back
        if handle.seek(0, os.SEEK_END) > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = b"\n" + line
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_history(path: Path) -> list[dict[str, Any]]:
    """Every record of the promotion history, oldest first; a torn line is skipped with a warning."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            logger.warning("%s line %d is not a complete record (skipped): %s", path, number, error)
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            logger.warning("%s line %d is not a record (skipped)", path, number)
    return records


def _evaluate_version(registry: Registry, version: int, holdout: pd.DataFrame, cfg: EvalConfig) -> EvalReport:
    from tagops.inference.predictor import Predictor
    from tagops.workloads.evaluate import evaluate_predictor

    predictor = Predictor.from_directory(
        registry.download(version), threshold=cfg.threshold, metadata={"version": version}
    )
    return evaluate_predictor(predictor, holdout, cfg)


def behaviour_of_version(registry: Registry, version: int, cfg: EvalConfig) -> BehaviourReport:
    """The behavioural cases on a registered version, loaded as :func:`_evaluate_version` loads it."""
    from tagops.inference.predictor import Predictor
    from tagops.workloads.behaviour import check_behaviour

    predictor = Predictor.from_directory(
        registry.download(version), threshold=cfg.threshold, metadata={"version": version}
    )
    return check_behaviour(predictor)


def promote(
    registry: Registry,
    *,
    holdout: pd.DataFrame,
    eval_cfg: EvalConfig,
    gate: GateConfig,
    history: Path,
    version: int | None = None,
    holdout_sha256: str | None = None,
    trigger: str | None = None,
) -> GateDecision:
    """Run the gate for ``version`` (default: the ``challenger``) and move ``champion`` if it passes.

    The challenger's behavioural report (when ``gate.behaviour`` lists any kind) and ``trigger`` (why
    this gate runs) are recorded in the promotion history.
    """
    from tagops.registry.client import CHALLENGER, CHAMPION

    candidate = version if version is not None else registry.alias_version(CHALLENGER)
    if candidate is None:
        raise RegistryError(f"models:/{registry.name}@{CHALLENGER}: no challenger to promote; train first")
    champion = registry.alias_version(CHAMPION)
    if champion == candidate:
        return GateDecision(False, f"version {candidate} is already champion", float("nan"), None, {})
    challenger_report = _evaluate_version(registry, candidate, holdout, eval_cfg)
    champion_report = _evaluate_version(registry, champion, holdout, eval_cfg) if champion else None
    behaviour = behaviour_of_version(registry, candidate, eval_cfg) if gate.behaviour else None
    decision = decide(challenger_report, champion_report, gate, behaviour)
    decision = record_decision(
        registry,
        decision,
        candidate=candidate,
        champion=champion,
        gate=gate,
        history=history,
        holdout_sha256=holdout_sha256,
        trigger=trigger,
        behaviour=behaviour,
    )
    verdict = "champion" if decision.promote else "refused"
    logger.info("gate: version %s %s (%s)", candidate, verdict, decision.reason)
    return decision


def record_decision(
    registry: Registry,
    decision: GateDecision,
    *,
    candidate: int,
    champion: int | None,
    gate: GateConfig,
    history: Path,
    holdout_sha256: str | None = None,
    trigger: str | None = None,
    evidence: dict[str, Any] | None = None,
    behaviour: BehaviourReport | None = None,
) -> GateDecision:
    """Apply a gate decision (move ``champion`` if it passed), append it to the history, tag the version.

    Under the promotion lock: when ``champion`` is no longer the champion (another promotion or a
    rollback moved it since the gate ran), a passing decision is recorded as refused, saying so. Returns
    the decision as applied.

    ``trigger`` says why the candidate was trained or gated at all ("manual", "schedule", "drift alarm
    at <window>"); ``evidence`` keeps what else decided it (e.g. the recent-window gate of a retrain);
    ``behaviour`` is the candidate's behavioural report (``None``: not checked), recorded in full and
    summed up in the ``gate.behaviour`` tag.
    """
    from tagops.registry.client import CHAMPION
    from tagops.workloads.behaviour import behaviour_tag

    with promotion_lock(history), registry.lease("promotion"):
        current = registry.alias_version(CHAMPION)
        if decision.promote and current != champion:
            decision = replace(
                decision,
                promote=False,
                reason=f"champion moved from version {champion} to {current} while the gate ran; "
                "gate again against the new champion",
            )
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "action": "promote" if decision.promote else "reject",
            "version": candidate,
            "previous_champion": champion,
            "champion": candidate if decision.promote else current,
            "holdout_sha256": holdout_sha256,
            "gate": gate.model_dump(),
            **asdict(decision),
            "behaviour": behaviour,
        }
        if trigger is not None:
            record["trigger"] = trigger
        if evidence:
            record["evidence"] = evidence
        append_history(history, record)  # on disk before the alias moves
        if decision.promote:
            registry.set_alias(CHAMPION, candidate)
    registry.set_version_tags(
        candidate,
        {
            "gate.decision": record["action"],
            "gate.reason": decision.reason,
            "gate.holdout_f1": f"{decision.challenger_f1:.4f}",
            "gate.compared_with": champion or "none",
            "gate.behaviour": behaviour_tag(behaviour),
            **({"gate.trigger": trigger} if trigger else {}),
        },
    )
    return decision


def rollback(registry: Registry, *, history: Path) -> tuple[int, int]:
    """Point ``champion`` back at the version it replaced; returns (from_version, to_version)."""
    from tagops.registry.client import CHAMPION

    with promotion_lock(history), registry.lease("promotion"):
        current = registry.alias_version(CHAMPION)
        if current is None:
            raise RegistryError("no champion to roll back")
        previous = next(
            (
                r.get("previous_champion")
                for r in reversed(read_history(history))
                if r.get("action") == "promote"
                and r.get("champion") == current
                and r.get("previous_champion") is not None
            ),
            None,
        )
        if previous is None:
            raise RegistryError(f"champion version {current} has no previous champion in {history}")
        append_history(
            history,
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "action": "rollback",
                "version": int(previous),
                "previous_champion": current,
                "champion": int(previous),
                "reason": f"rollback from version {current}",
            },
        )
        registry.set_alias(CHAMPION, int(previous))
    registry.set_version_tags(current, {"rolled_back": "true"})
    return current, int(previous)
