"""Retraining with feedback: original data + validated feedback → challenger → two gates → champion.

``tagops retrain [--if-needed] [--summary FILE] [--no-promote] [--config configs/loop.yaml]`` runs the
ZenML pipeline in :mod:`tagops.pipelines.retraining` (``--no-pipeline``: these functions in-process):

1. **Feedback rows.** Every feedback row joined with the prediction it labels (the input the model saw).
   A prediction labelled twice with different tags, and a text labelled differently on different
   predictions, are conflicts and dropped; repeated texts are kept once; a text whose title is already in
   dataset.csv or holdout.csv is dropped (no duplicates, no leakage into the holdout); the rest must pass
   the data contract (:func:`tagops.data.validate.validate_frame`), row by row.
2. **Split by time.** The newest ``recent_fraction`` of those rows is the *recent labelled window*,
   held out of training; the older rows join dataset.csv as training data.
3. **Challenger.** :func:`tagops.workloads.train.run_training` with the config's family on the augmented data,
   registered as ``challenger``.
4. **Evaluate and gate.** Champion and challenger on the holdout and on the recent window; the
   challenger must pass ``gate`` on the holdout and ``recent_gate`` on the recent window.
5. **Promote and reload.** On a pass, ``champion`` moves (the promotion history records the trigger: a
   drift alarm and its window, "schedule" or "manual"), and a configured service is told to reload.

:func:`decide_retrain` is the policy ``--if-needed`` consults (see :class:`tagops.config.RetrainPolicy`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from tagops.errors import DataError, TagopsError

if TYPE_CHECKING:
    import pandas as pd

    from tagops.config import RetrainConfig, RetrainPolicy
    from tagops.registry.client import Registry
    from tagops.settings import Settings
    from tagops.workloads.train import DataSnapshot

logger = logging.getLogger(__name__)

FEEDBACK_FILE = "feedback"


class RetrainEnvironment(BaseSettings):
    """Where the service is and the admin key that may reload it (``TAGOPS_RETRAIN_``; never in YAML)."""

    model_config = SettingsConfigDict(env_prefix="TAGOPS_RETRAIN_", frozen=True, extra="ignore")

    service_url: str | None = None
    admin_key: str | None = Field(default=None, repr=False)


# ---------------------------------------------------------------------------------------- policy
@dataclass(frozen=True)
class RetrainDecision:
    """Whether to retrain, and the reason the promotion history will record."""

    run: bool
    reason: str


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def decide_retrain(
    policy: RetrainPolicy,
    *,
    if_needed: bool,
    now: datetime,
    summary: dict[str, Any] | None,
    champion_version: int | None,
    last_retrain_at: datetime | None,
    feedback_rows: int | None = None,
) -> RetrainDecision:
    """The policy: a pure function of the latest monitor summary, the last retrain and the feedback.

    Without ``if_needed`` the answer is always yes ("manual"). ``feedback_rows`` (validated rows
    available) is checked only once a trigger fired.
    """
    if not if_needed:
        return RetrainDecision(True, "manual")
    if policy.trigger == "manual":
        return RetrainDecision(False, "the policy is manual: run `tagops retrain` without --if-needed")
    if policy.trigger == "schedule":
        due = last_retrain_at is None or now - last_retrain_at >= timedelta(hours=policy.interval_hours)
        if not due:
            return RetrainDecision(
                False, f"last retrain at {last_retrain_at:%Y-%m-%d %H:%M}, within {policy.interval_hours:g} h"
            )
        decision = RetrainDecision(True, "schedule")
    else:
        if summary is None:
            return RetrainDecision(False, "no monitor summary to consult (run `tagops monitor` first)")
        window = f"{summary.get('since')} to {summary.get('until')}"
        if not summary.get("alarm"):
            return RetrainDecision(False, f"the latest monitor window ({window}) raised no alarm")
        version = summary.get("model_version")
        if champion_version is not None and version is not None and int(version) != champion_version:
            return RetrainDecision(
                False, f"the latest alarm is about version {version}; the champion is {champion_version}"
            )
        created = _parse_time(summary.get("created_at"))
        if created is not None and now - created > timedelta(hours=policy.max_summary_age_hours):
            return RetrainDecision(
                False, f"the latest alarm ({window}) is older than {policy.max_summary_age_hours:g} h"
            )
        until = _parse_time(summary.get("until"))
        if last_retrain_at is not None and until is not None and until <= last_retrain_at:
            return RetrainDecision(
                False, f"the alarm of {window} was handled by the retrain at {last_retrain_at}"
            )
        kind = "drift alarm" if summary.get("drift_alarm") else "performance alarm"
        decision = RetrainDecision(True, f"{kind} at {window}")
    if feedback_rows is not None and feedback_rows < policy.min_feedback_rows:
        return RetrainDecision(
            False,
            f"{decision.reason}, but only {feedback_rows} validated feedback rows "
            f"(min_feedback_rows {policy.min_feedback_rows})",
        )
    return decision


def latest_monitor_summary(reports_dir: Path) -> dict[str, Any] | None:
    """The newest ``summary.json`` of ``tagops monitor`` under ``reports_dir`` (by its ``created_at``)."""
    newest: tuple[str, dict[str, Any]] | None = None
    for path in reports_dir.glob("monitor-*/summary.json"):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            logger.warning("ignoring unreadable monitor summary %s", path)
            continue
        stamp = str(summary.get("created_at", ""))
        if newest is None or stamp > newest[0]:
            newest = (stamp, summary)
    return None if newest is None else newest[1]


def last_retrain_time(history: list[dict[str, Any]]) -> datetime | None:
    """When the last retrain was gated (the newest history record with a ``trigger``)."""
    for record in reversed(history):
        if record.get("trigger") and record.get("trigger") != "initial":
            parsed = _parse_time((record.get("evidence") or {}).get("retrained_at") or record.get("time"))
            if parsed is not None:
                return parsed
    return None


# -------------------------------------------------------------------------------- feedback → rows
@dataclass
class FeedbackRows:
    """Validated feedback as projects rows: what joins training and the held-out recent window."""

    train: pd.DataFrame
    recent: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def _text_key(title: str, description: str) -> str:
    return f"{title.strip()} {description.strip()}".lower()


def feedback_to_rows(
    labelled: list[dict[str, Any]],
    dataset: pd.DataFrame,
    holdout: pd.DataFrame,
    *,
    recent_fraction: float,
) -> FeedbackRows:
    """Turn feedback joined with its predictions into contract-valid rows, split by time.

    ``labelled`` rows are :meth:`~tagops.predlog.reader.LogReader.read_labelled` rows. Counts of every
    row dropped, and why, are returned with the rows.
    """
    import pandas as pd

    from tagops.data.validate import validate_frame

    counts = {"feedback": len(labelled)}
    by_prediction: dict[str, list[dict[str, Any]]] = {}
    for row in labelled:
        by_prediction.setdefault(str(row["prediction_id"]), []).append(row)
    candidates = []
    conflicting_predictions = repeated = 0
    for rows in by_prediction.values():
        if len({str(r["feedback_tag"]) for r in rows}) > 1:
            conflicting_predictions += 1
            continue
        repeated += len(rows) - 1
        candidates.append(max(rows, key=lambda r: r["feedback_at"]))  # the latest of identical labels
    counts["conflicting_predictions"] = conflicting_predictions
    counts["repeated_feedback"] = repeated
    by_text: dict[str, list[dict[str, Any]]] = {}
    for row in candidates:
        by_text.setdefault(_text_key(str(row["title"]), str(row["description"])), []).append(row)
    unique, conflicting_texts, duplicates = [], 0, 0
    for rows in by_text.values():
        if len({str(r["feedback_tag"]) for r in rows}) > 1:
            conflicting_texts += len(rows)
            continue
        duplicates += len(rows) - 1
        unique.append(max(rows, key=lambda r: r["feedback_at"]))
    counts["conflicting_texts"] = conflicting_texts
    counts["duplicate_texts"] = duplicates
    known_titles = {str(t).strip().lower() for t in [*dataset["title"], *holdout["title"]]}
    known_texts = {
        _text_key(str(t), str(d))
        for frame in (dataset, holdout)
        for t, d in zip(frame["title"], frame["description"], strict=True)
    }
    fresh = [
        r
        for r in unique
        if str(r["title"]).strip().lower() not in known_titles
        and _text_key(str(r["title"]), str(r["description"])) not in known_texts
    ]
    counts["known_titles"] = len(unique) - len(fresh)
    fresh.sort(key=lambda r: (r["feedback_at"], str(r["prediction_id"])))
    next_id = int(max([*dataset["id"].tolist(), *holdout["id"].tolist(), 0])) + 1
    frame = pd.DataFrame(
        {
            "id": [str(next_id + i) for i in range(len(fresh))],
            "created_on": [r["feedback_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") for r in fresh],
            "title": [str(r["title"]) for r in fresh],
            "description": [str(r["description"]) for r in fresh],
            "tag": [str(r["feedback_tag"]) for r in fresh],
        },
        dtype=object,
    )
    frame = frame.astype(str) if len(frame) else frame
    before = len(frame)
    valid = _valid_rows(frame, validate_frame)
    counts["invalid"] = before - len(valid)
    recent_rows = math.ceil(len(valid) * recent_fraction) if len(valid) >= 2 else 0
    train = valid.iloc[: len(valid) - recent_rows].reset_index(drop=True)
    recent = valid.iloc[len(valid) - recent_rows :].reset_index(drop=True)
    counts["train"], counts["recent"] = len(train), len(recent)
    return FeedbackRows(train, recent, counts)


def _valid_rows(frame: pd.DataFrame, validate_frame: Any) -> pd.DataFrame:
    """The rows of ``frame`` that pass the contract (typed), dropping each row a violation names."""
    import pandas as pd

    from tagops.data.ingest import EXPECTED_COLUMNS

    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in EXPECTED_COLUMNS})
    for _ in range(3):  # dropping a row cannot create a new violation; the loop is a safety net
        if frame.empty:
            return empty
        try:
            return validate_frame(frame, file=FEEDBACK_FILE)  # type: ignore[no-any-return]
        except DataError as error:
            bad = {v.row - 1 for v in error.violations if v.row is not None}
            if not bad:  # a file-level problem: nothing row-wise to drop
                raise
            for violation in error.violations[:5]:
                logger.info("feedback row dropped: %s", violation)
            frame = frame.drop(index=[i for i in bad if i in frame.index]).reset_index(drop=True)
    raise TagopsError("feedback rows keep failing the data contract; see the log")


def write_training_data(
    dataset: pd.DataFrame, rows: pd.DataFrame, holdout_path: Path, output_dir: Path
) -> DataSnapshot:
    """dataset.csv + feedback rows as one projects file (the holdout is left as it is), hashed."""
    import pandas as pd

    from tagops.workloads.train import snapshot

    output_dir.mkdir(parents=True, exist_ok=True)
    combined = pd.concat([dataset, rows], ignore_index=True)
    combined["created_on"] = pd.to_datetime(combined["created_on"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    path = output_dir / "dataset.csv"
    combined.to_csv(path, index=False)
    return snapshot(path, holdout_path)


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


def collect_feedback_stage(
    cfg: RetrainConfig, settings: Settings
) -> tuple[DataSnapshot, pd.DataFrame, pd.DataFrame, FeedbackRows]:
    """The original data (validated) and the feedback rows to add, from the prediction log."""
    from tagops.predlog.log import PredictionLog
    from tagops.workloads.train import pull_stage, validate_stage

    original = pull_stage(settings, cfg.train.data)
    dataset, holdout = validate_stage(original)
    with PredictionLog.from_config(cfg, settings) as log:
        log.create_tables()
        labelled = log.reader.read_labelled()
    rows = feedback_to_rows(labelled, dataset, holdout, recent_fraction=cfg.recent_fraction)
    logger.info("retrain: feedback rows %s", rows.counts)
    return original, dataset, holdout, rows


def train_challenger_stage(
    cfg: RetrainConfig, settings: Settings, data: DataSnapshot, registry: Registry
) -> int:
    """Train the config's family on the augmented data and register it as ``challenger``."""
    from tagops.workloads.train import run_training

    name = f"retrain-{cfg.train.model.family}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_training(cfg.train, settings, registry=registry, data=data, run_name=name)
    if result.version is None:
        raise TagopsError("retrain: the challenger was not registered")
    return result.version


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


def gate_stage(reports: dict[str, Any], cfg: RetrainConfig) -> dict[str, Any]:
    """Both gates: the holdout's (``gate``) and the recent window's (``recent_gate``); pure."""
    from tagops.workloads.promote import decide

    holdout = decide(reports["challenger_holdout"], reports["champion_holdout"], cfg.gate)
    result: dict[str, Any] = {"holdout": asdict(holdout), "recent": None}
    passed, reason = holdout.promote, f"holdout: {holdout.reason}"
    if reports.get("challenger_recent") is not None:
        recent = decide(reports["challenger_recent"], reports["champion_recent"], cfg.recent_gate)
        result["recent"] = asdict(recent)
        passed = passed and recent.promote
        reason = f"{reason}; recent window: {recent.reason}"
    else:
        reason = f"{reason}; recent window: no labelled rows held out"
    result.update(promote=passed, reason=reason)
    return result


def promote_stage(
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
    """Record the two-gate decision in the promotion history and move ``champion`` if it passed."""
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
    record_decision(
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
    )
    return decision.promote


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


def service_target(cfg: RetrainConfig) -> tuple[str | None, str | None]:
    """The service URL (environment, else config) and the admin key (environment only)."""
    env = RetrainEnvironment()
    return env.service_url or cfg.service_url, env.admin_key


def consult_policy(
    cfg: RetrainConfig,
    settings: Settings,
    registry: Registry,
    *,
    if_needed: bool,
    summary: dict[str, Any] | None,
    feedback_rows: int | None,
) -> RetrainDecision:
    """Gather what the policy needs (champion, last retrain, summary) and decide."""
    from tagops.workloads.promote import read_history

    champion = registry.alias_version("champion")
    if if_needed and summary is None:
        summary = latest_monitor_summary(settings.reports_dir)
    return decide_retrain(
        cfg.policy,
        if_needed=if_needed,
        now=datetime.now(UTC),
        summary=summary,
        champion_version=champion,
        last_retrain_at=last_retrain_time(read_history(settings.promotion_history)),
        feedback_rows=feedback_rows,
    )


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
    """Retrain in this process (the stages the pipeline runs as steps); see the module docstring.

    ``promote=False`` stops after the gate is computed: the challenger is registered (e.g. to be shadowed
    first) and nothing is promoted or recorded. ``trigger`` overrides the policy's reason.
    """
    from tagops.registry.client import Registry

    started = time.perf_counter()
    registry = registry or Registry(settings)
    original, dataset, holdout, rows = collect_feedback_stage(cfg, settings)
    decision = consult_policy(
        cfg,
        settings,
        registry,
        if_needed=if_needed,
        summary=summary,
        feedback_rows=len(rows.train) + len(rows.recent),
    )
    if trigger is not None:
        decision = RetrainDecision(decision.run, trigger)
    result = RetrainResult(decision, counts=rows.counts)
    if not decision.run:
        logger.info("retrain: not needed: %s", decision.reason)
        result.seconds = time.perf_counter() - started
        return result
    logger.info("retrain: %s", decision.reason)
    folder = settings.home / "retrain" / time.strftime("%Y%m%d-%H%M%S")
    data = write_training_data(dataset, rows.train, original.holdout_path, folder)
    rows.recent.to_csv(folder / "recent.csv", index=False)
    result.champion_version = registry.alias_version("champion")
    result.challenger_version = train_challenger_stage(cfg, settings, data, registry)
    result.reports = evaluate_versions_stage(
        registry,
        champion=result.champion_version,
        challenger=result.challenger_version,
        holdout=holdout,
        recent=rows.recent,
        cfg=cfg,
    )
    result.gate = gate_stage(result.reports, cfg)
    if promote:
        result.promoted = promote_stage(
            registry,
            settings,
            challenger=result.challenger_version,
            champion=result.champion_version,
            gate=result.gate,
            cfg=cfg,
            trigger=decision.reason,
            holdout_sha256=original.holdout_sha256,
            evidence={"feedback": rows.counts},
        )
    url, key = service_target(cfg)
    if result.promoted or not promote:
        # A promotion changes the champion; a new challenger changes what a shadow scores.
        result.reload = reload_service(url, key, timeout_s=cfg.reload_timeout_s)
    result.seconds = time.perf_counter() - started
    return result
