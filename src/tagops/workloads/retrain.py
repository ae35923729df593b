"""Retraining with feedback: original data + validated feedback → challenger → two gates → champion.

``tagops retrain [--if-needed] [--summary FILE] [--no-promote] [--config configs/loop.yaml]`` runs the
ZenML pipeline in :mod:`tagops.pipelines.retraining` (``--no-pipeline``: these functions in-process):

1. **Feedback rows.** Every feedback row joined with the prediction it labels (the input the model saw)
   and the key that sent it. Only trusted labels count (a ``labeller`` or ``admin`` key's, or a client
   label a person accepted; never a revoked key's), one vote per key and text, conflicts resolved by
   trust then agreement (:mod:`tagops.predlog.feedback`); a text whose title is already in
   dataset.csv or holdout.csv is dropped (no duplicates, no leakage into the holdout); the rest must pass
   the data contract (:func:`tagops.data.validate.validate_frame`), row by row.
2. **Split by time.** The newest ``recent_fraction`` of those rows is the *recent labelled window*,
   held out of training; the older rows join dataset.csv as training data.
3. **Challenger.** :func:`tagops.workloads.train.run_training` with the config's family on the augmented data,
   registered as ``challenger``.
4. **Evaluate and gate.** Champion and challenger on the holdout and on the recent window, and the
   challenger on the behavioural cases (:mod:`tagops.workloads.behaviour`); the challenger must pass
   ``gate`` on the holdout and ``recent_gate`` on the recent window, each with the behavioural kinds it
   lists (the rule of :func:`tagops.workloads.promote.decide`).
5. **Promote and reload.** On a pass, ``champion`` moves (the promotion history records the trigger: a
   drift alarm and its window, "schedule" or "manual"), and a configured service is told to reload.

:func:`decide_retrain` is the policy ``--if-needed`` consults (see :class:`tagops.config.RetrainPolicy`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.config import RetrainConfig
from tagops.errors import TagopsError
from tagops.workloads.retrain_policy import RetrainDecision, consult_policy
from tagops.workloads.stages import Stage, run_stages

if TYPE_CHECKING:
    import pandas as pd

    from tagops.data.stages import DataSnapshot
    from tagops.registry.client import Registry
    from tagops.settings import Settings
    from tagops.workloads.behaviour import BehaviourReport

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ stages
@dataclass
class RetrainResult:
    """What one retrain did."""

    decision: RetrainDecision
    counts: dict[str, int] = field(default_factory=dict)
    challenger_version: int | None = None
    champion_version: int | None = None
    reports: dict[str, Any] = field(default_factory=dict)
    gate: dict[str, Any] = field(default_factory=dict)
    promoted: bool = False
    reload: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (headline metrics of the four evaluations, not the full reports)."""
        data = asdict(self)
        data["reports"] = {
            name: {
                "f1": r["overall"]["f1"],
                "f1_ci95": r["overall"]["f1_ci95"],
                "rows": r["overall"]["num_samples"],
            }
            for name, r in self.reports.items()
            if r
        }
        return data


def feedback_stage(
    settings: Settings, retrain: RetrainConfig
) -> tuple[DataSnapshot, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """The original data (validated) and the feedback from the prediction log as rows.

    Returns the original snapshot, dataset.csv, the holdout, the feedback rows that join training, the
    recent labelled window, and the counts of rows kept and dropped. With ``train.data.snapshot`` set,
    all of them come from that warehouse snapshot (``build``: one built now with this config's
    feedback, by the same rules), and the original snapshot is its training set, feedback included.
    """
    from tagops.data.stages import pull_stage, validate_stage
    from tagops.predlog.feedback import feedback_to_rows
    from tagops.predlog.log import PredictionLog

    if retrain.train.data.snapshot is not None:
        return _snapshot_feedback(settings, retrain)
    original = pull_stage(settings, retrain.train.data)
    dataset, holdout = validate_stage(original)
    with PredictionLog.from_config(retrain, settings) as log:
        log.create_tables()
        labelled = log.reader.read_labelled()
    rows = feedback_to_rows(labelled, dataset, holdout, recent_fraction=retrain.recent_fraction)
    logger.info("retrain: feedback rows %s", rows.counts)
    return original, dataset, holdout, rows.train, rows.recent, rows.counts


def _snapshot_feedback(
    settings: Settings, retrain: RetrainConfig
) -> tuple[DataSnapshot, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """:func:`feedback_stage`'s results from a warehouse snapshot: its tables, split by origin."""
    from tagops.data.ingest import EXPECTED_COLUMNS
    from tagops.data.stages import validate_stage
    from tagops.warehouse.snapshots import load_snapshot_table, read_lineage, resolve_snapshot
    from tagops.warehouse.training import data_stage

    original = data_stage(settings, retrain.train.data, retrain)
    assert original.snapshot_id is not None
    training, holdout = validate_stage(original)
    lineage = read_lineage(resolve_snapshot(settings, original.snapshot_id))
    columns = list(EXPECTED_COLUMNS)
    origin = load_snapshot_table(settings, original.snapshot_id, "training_set")["origin"]
    feedback = training[origin.to_numpy() == "feedback"].reset_index(drop=True)
    dataset = training[origin.to_numpy() != "feedback"].reset_index(drop=True)
    recent = load_snapshot_table(settings, original.snapshot_id, "recent_window")[columns]
    counts = {**lineage.feedback.counts, "train": len(feedback), "recent": len(recent)}
    logger.info("retrain: snapshot %s, feedback rows %s", original.snapshot_id, counts)
    return original, dataset, holdout, feedback, recent, counts


def training_data_stage(
    settings: Settings,
    original: DataSnapshot,
    dataset: pd.DataFrame,
    feedback: pd.DataFrame,
    recent: pd.DataFrame,
) -> DataSnapshot:
    """dataset.csv + feedback rows as the challenger's data, in a new folder under ``TAGOPS_HOME/retrain``.

    The recent window is saved beside it (``recent.csv``) for the record; the holdout stays the original.
    A warehouse snapshot's training set holds the feedback rows already: it is the challenger's data as
    it is, and the snapshot keeps the recent window.
    """
    from tagops.predlog.feedback import write_training_data

    if original.snapshot_id is not None:
        return original

    # A new folder per retrain, even for two started in the same second (created 0700: it holds user text).
    (settings.home / "retrain").mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=settings.home / "retrain"))
    data = write_training_data(dataset, feedback, original.holdout_path, folder)
    recent.to_csv(folder / "recent.csv", index=False)
    return data


def challenger_stage(
    settings: Settings, retrain: RetrainConfig, training_data: DataSnapshot, registry: Registry | None = None
) -> int:
    """Train the config's family on the augmented data and register it as ``challenger``."""
    from tagops.registry.client import Registry
    from tagops.workloads.train import run_training

    name = f"retrain-{retrain.train.model.family}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_training(
        retrain.train, settings, registry=registry or Registry(settings), data=training_data, run_name=name
    )
    if result.version is None:
        raise TagopsError("retrain: the challenger was not registered")
    return result.version


def evaluation_stage(
    settings: Settings,
    retrain: RetrainConfig,
    challenger: int,
    holdout: pd.DataFrame,
    recent: pd.DataFrame,
    registry: Registry | None = None,
) -> dict[str, Any]:
    """Champion and challenger on the holdout and the recent window, and both gates' verdict."""
    from tagops.registry.client import CHAMPION, Registry
    from tagops.workloads.promote import behaviour_of_version

    registry = registry or Registry(settings)
    champion = registry.alias_version(CHAMPION)
    reports = evaluate_versions_stage(
        registry, champion=champion, challenger=challenger, holdout=holdout, recent=recent, cfg=retrain
    )
    behaviour = None
    if retrain.gate.behaviour or retrain.recent_gate.behaviour:
        behaviour = behaviour_of_version(registry, challenger, retrain.train.evaluation)
    return {"champion": champion, "reports": reports, "gate": gate_stage(reports, retrain, behaviour)}


def evaluate_versions_stage(
    registry: Registry,
    *,
    champion: int | None,
    challenger: int,
    holdout: pd.DataFrame,
    recent: pd.DataFrame,
    cfg: RetrainConfig,
) -> dict[str, Any]:
    """Champion and challenger on the holdout and on the recent labelled window (empty: not evaluated)."""
    from tagops.workloads.promote import _evaluate_version

    reports: dict[str, Any] = {}
    for role, version in (("champion", champion), ("challenger", challenger)):
        for name, frame in (("holdout", holdout), ("recent", recent)):
            key = f"{role}_{name}"
            if version is None or frame.empty:
                reports[key] = None
            else:
                reports[key] = _evaluate_version(registry, version, frame, cfg.train.evaluation)
    return reports


def gate_stage(
    reports: dict[str, Any], cfg: RetrainConfig, behaviour: BehaviourReport | None = None
) -> dict[str, Any]:
    """Both gates: the holdout's (``gate``) and the recent window's (``recent_gate``); pure.

    ``behaviour`` is the challenger's behavioural report (``None``: not checked); each gate refuses on
    the kinds its ``behaviour`` field lists, as :func:`tagops.workloads.promote.decide` does.
    """
    from tagops.workloads.promote import decide

    holdout = decide(reports["challenger_holdout"], reports["champion_holdout"], cfg.gate, behaviour)
    result: dict[str, Any] = {"holdout": asdict(holdout), "recent": None, "behaviour": behaviour}
    passed, reason = holdout.promote, f"holdout: {holdout.reason}"
    if reports.get("challenger_recent") is not None:
        recent = decide(reports["challenger_recent"], reports["champion_recent"], cfg.recent_gate, behaviour)
        result["recent"] = asdict(recent)
        passed = passed and recent.promote
        reason = f"{reason}; recent window: {recent.reason}"
    else:
        reason = f"{reason}; recent window: no labelled rows held out"
    result.update(promote=passed, reason=reason)
    return result


def promote_stage(
    settings: Settings,
    retrain: RetrainConfig,
    challenger: int,
    evaluation: Mapping[str, Any],
    training_data: DataSnapshot,
    counts: Mapping[str, int],
    trigger: str,
    promote: bool,
    registry: Registry | None = None,
) -> bool:
    """Record the decision with its trigger and move ``champion`` if both gates passed (if asked to)."""
    from tagops.registry.client import Registry

    if not promote:
        return False
    return record_promotion(
        registry or Registry(settings),
        settings,
        challenger=challenger,
        champion=evaluation["champion"],
        gate=evaluation["gate"],
        cfg=retrain,
        trigger=trigger,
        holdout_sha256=training_data.holdout_sha256,
        evidence={"feedback": dict(counts)},
    )


def record_promotion(
    registry: Registry,
    settings: Settings,
    *,
    challenger: int,
    champion: int | None,
    gate: dict[str, Any],
    cfg: RetrainConfig,
    trigger: str,
    holdout_sha256: str | None,
    evidence: dict[str, Any] | None = None,
) -> bool:
    """Record a two-gate decision in the promotion history and move ``champion`` if it passed."""
    from tagops.workloads.promote import GateDecision, record_decision

    holdout = gate["holdout"]
    decision = GateDecision(
        promote=bool(gate["promote"]),
        reason=str(gate["reason"]),
        challenger_f1=float(holdout["challenger_f1"]),
        champion_f1=None if holdout["champion_f1"] is None else float(holdout["champion_f1"]),
        class_f1_drops=dict(holdout["class_f1_drops"]),
        class_drop_confidence=holdout.get("class_drop_confidence"),
    )
    if champion == challenger:
        logger.info("retrain: version %s is already champion (identical model)", challenger)
        return False
    applied = record_decision(
        registry,
        decision,
        candidate=challenger,
        champion=champion,
        gate=cfg.gate,
        history=settings.promotion_history,
        holdout_sha256=holdout_sha256,
        trigger=trigger,
        evidence={
            "recent_gate": gate.get("recent"),
            "retrained_at": datetime.now(UTC).isoformat(),
            **(evidence or {}),
        },
        behaviour=gate.get("behaviour"),
    )
    return applied.promote


def reload_stage(
    settings: Settings, retrain: RetrainConfig, promoted: bool, promote: bool
) -> dict[str, Any] | None:
    """Tell the configured service to reload (a new champion, or a new challenger for its shadow)."""
    if promote and not promoted:
        return None
    url, key = service_target(retrain, settings)
    return reload_service(url, key, timeout_s=retrain.reload_timeout_s)


def reload_service(
    service_url: str | None, admin_key: str | None, *, timeout_s: float
) -> dict[str, Any] | None:
    """POST /v1/admin/reload; ``None`` when no service is configured, an ``error`` entry on failure.

    A failed reload is reported, not raised: the registry already holds the new champion, and a service
    that missed the reload picks it up at its next reload or restart.
    """
    if not service_url:
        logger.info("retrain: no service URL configured; nothing to reload")
        return None
    import httpx

    if not admin_key:
        message = "no admin key (set TAGOPS_RETRAIN_ADMIN_KEY) to reload the service"
        logger.error("retrain: %s", message)
        return {"error": message}
    try:
        response = httpx.post(
            f"{service_url.rstrip('/')}/v1/admin/reload",
            headers={"Authorization": f"Bearer {admin_key}"},
            timeout=timeout_s,
        )
    except httpx.HTTPError as error:
        logger.error("retrain: reload of %s failed: %s", service_url, error)
        return {"error": str(error)}
    if response.status_code != 200:
        logger.error(
            "retrain: reload of %s answered %d: %s", service_url, response.status_code, response.text
        )
        return {"error": f"HTTP {response.status_code}: {response.text[:500]}"}
    body: dict[str, Any] = response.json()
    return body


def service_target(cfg: RetrainConfig, settings: Settings) -> tuple[str | None, str | None]:
    """The service URL (settings, else config) and the admin key (settings only: never in a file)."""
    return settings.retrain.service_url or cfg.service_url, settings.retrain.admin_key


# -------------------------------------------------------------------------------------------- plan
def retrain_plan(
    cfg: RetrainConfig, *, trigger: str, promote: bool = True, registry: Registry | None = None
) -> list[Stage]:
    """The retraining workload: feedback, training data, challenger, evaluation, promotion, reload."""
    shared = {"registry": registry} if registry is not None else {}
    return [
        Stage(
            "feedback_step",
            feedback_stage,
            params={"retrain": cfg},
            outputs=("original", "dataset", "holdout", "feedback", "recent", "counts"),
        ),
        Stage(
            "training_data_step",
            training_data_stage,
            inputs={"original": "original", "dataset": "dataset", "feedback": "feedback", "recent": "recent"},
            outputs=("training_data",),
        ),
        Stage(
            "challenger_step",
            challenger_stage,
            inputs={"training_data": "training_data"},
            params={"retrain": cfg, **shared},
            outputs=("challenger",),
        ),
        Stage(
            "evaluate_step",
            evaluation_stage,
            inputs={"challenger": "challenger", "holdout": "holdout", "recent": "recent"},
            params={"retrain": cfg, **shared},
            outputs=("evaluation",),
        ),
        Stage(
            "promote_step",
            promote_stage,
            inputs={
                "challenger": "challenger",
                "evaluation": "evaluation",
                "training_data": "training_data",
                "counts": "counts",
            },
            params={"retrain": cfg, "trigger": trigger, "promote": promote, **shared},
            outputs=("promoted",),
        ),
        Stage(
            "reload_step",
            reload_stage,
            inputs={"promoted": "promoted"},
            params={"retrain": cfg, "promote": promote},
            outputs=("reload",),
        ),
    ]


def retrain_result(decision: RetrainDecision, results: Mapping[str, Any], seconds: float) -> RetrainResult:
    """What a run of :func:`retrain_plan` did, from its results by name (either path)."""
    evaluation = results["evaluation"]
    return RetrainResult(
        decision,
        counts=dict(results["counts"]),
        challenger_version=int(results["challenger"]),
        champion_version=evaluation["champion"],
        reports=dict(evaluation["reports"]),
        gate=dict(evaluation["gate"]),
        promoted=bool(results["promoted"]),
        reload=results["reload"],
        seconds=seconds,
    )


def decide(
    cfg: RetrainConfig,
    settings: Settings,
    registry: Registry,
    *,
    if_needed: bool,
    summary: dict[str, Any] | None,
    counts: Mapping[str, int] | None = None,
) -> RetrainDecision:
    """The policy's decision; the feedback rows' count is read from the log unless ``counts`` has it."""
    if counts is None:
        counts = feedback_stage(settings, cfg)[-1]
    return consult_policy(
        cfg, settings, registry, if_needed=if_needed, summary=summary, feedback_rows=usable_rows(counts)
    )


def usable_rows(counts: Mapping[str, int]) -> int:
    """Trusted feedback rows that survived validation (training rows + the recent window)."""
    return int(counts.get("train", 0)) + int(counts.get("recent", 0))


def run_retrain(
    cfg: RetrainConfig,
    settings: Settings,
    *,
    if_needed: bool = False,
    summary: dict[str, Any] | None = None,
    promote: bool = True,
    registry: Registry | None = None,
    trigger: str | None = None,
) -> RetrainResult:
    """Consult the policy, then run :func:`retrain_plan` in this process; see the module docstring.

    ``promote=False`` stops after the gate is computed: the challenger is registered (e.g. to be shadowed
    first) and nothing is promoted or recorded. ``trigger`` overrides the policy's reason.
    """
    from tagops.registry.client import Registry

    started = time.perf_counter()
    registry = registry or Registry(settings)
    plan = retrain_plan(cfg, trigger=trigger or "", promote=promote, registry=registry)
    results = run_stages(plan[:1], settings)  # the policy weighs the feedback rows
    decision = decide(cfg, settings, registry, if_needed=if_needed, summary=summary, counts=results["counts"])
    if trigger is not None:
        decision = RetrainDecision(decision.run, trigger)
    if not decision.run:
        logger.info("retrain: not needed: %s", decision.reason)
        return RetrainResult(decision, counts=dict(results["counts"]), seconds=time.perf_counter() - started)
    logger.info("retrain: %s", decision.reason)
    plan = retrain_plan(cfg, trigger=decision.reason, promote=promote, registry=registry)
    results = run_stages(plan[1:], settings, results=results)
    return retrain_result(decision, results, time.perf_counter() - started)
