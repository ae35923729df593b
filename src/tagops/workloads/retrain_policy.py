"""When to retrain: the policy ``tagops retrain --if-needed`` consults (:class:`tagops.config.RetrainPolicy`).

A drift or performance alarm in a recent monitor summary (``on_alert``), a schedule (``interval_hours``
since the last retrain) or a manual request decide; the reason is what the promotion history records.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagops.config import RetrainConfig, RetrainPolicy
    from tagops.registry.client import Registry
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


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

    Without ``if_needed`` the answer is always yes ("manual"). ``feedback_rows`` (trusted rows available,
    see :mod:`tagops.predlog.feedback`) is checked only once a trigger fired.
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
            f"{decision.reason}, but only {feedback_rows} trusted feedback rows "
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
