"""One turn of the loop: monitor the champion's recent window, then ask the retrain policy with its summary.

    tagops monitor                        # monitor_once
    tagops retrain [--if-needed]          # retrain_once
    tagops loop run [--every 15m|--once]  # loop_turn, on a schedule (tagops.workloads.schedule)

Each step runs as its ZenML pipeline (``pipeline=True``, lineage in ZenML) or as the same stages in this
process; the CLI commands and the scheduler share these functions, so a scheduled turn does exactly what
a person typing the two commands would.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagops.config import MonitorConfig, RetrainConfig, SimulateConfig
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


def monitor_once(
    cfg: MonitorConfig,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    output_dir: Path | None = None,
    pipeline: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Monitor one window (default: the config's last ``window_hours`` until now); its summary and folder."""
    from tagops.workloads.monitor import resolve_window, run_monitor

    start, end = resolve_window(since, until, cfg)
    target = output_dir or settings.reports_dir / f"monitor-{end:%Y%m%d-%H%M%S}"
    if pipeline:
        from tagops.pipelines.monitoring import run_monitoring_pipeline

        summary = run_monitoring_pipeline(cfg, since=start, until=end, output_dir=target)
    else:
        summary = dict(run_monitor(cfg, settings, since=start, until=end, output_dir=target).summary)
    return summary, target


def retrain_once(
    cfg: RetrainConfig,
    settings: Settings,
    *,
    if_needed: bool,
    summary: dict[str, Any] | None,
    promote: bool = True,
    pipeline: bool = True,
) -> dict[str, Any]:
    """Consult the policy and, when it says yes, retrain → gate → promote → reload; the outcome as JSON."""
    from tagops.registry.client import Registry
    from tagops.workloads.retrain import decide, feedback_stage, run_retrain

    if not pipeline:
        return run_retrain(cfg, settings, if_needed=if_needed, summary=summary, promote=promote).to_json()
    counts = feedback_stage(settings, cfg)[-1]
    decision = decide(cfg, settings, Registry(settings), if_needed=if_needed, summary=summary, counts=counts)
    if not decision.run:
        return {"decision": {"run": False, "reason": decision.reason}, "counts": counts}
    from tagops.pipelines.retraining import run_retraining_pipeline

    return run_retraining_pipeline(cfg, trigger=decision.reason, promote=promote)


def loop_turn(cfg: SimulateConfig, settings: Settings, *, pipeline: bool) -> dict[str, Any]:
    """Monitor the last window, then ``retrain --if-needed`` with that window's summary."""
    summary, folder = monitor_once(cfg.monitor, settings, pipeline=pipeline)
    logger.info(
        "loop: window of %s rows, alarm %s (drifted: %s)",
        summary.get("num_rows"),
        summary.get("alarm"),
        ", ".join(summary.get("drifted") or []) or "none",
    )
    outcome = retrain_once(cfg.retrain, settings, if_needed=True, summary=summary, pipeline=pipeline)
    return {
        "monitor": {
            "alarm": summary.get("alarm"),
            "drifted": summary.get("drifted"),
            "performance_alarm": summary.get("performance_alarm"),
            "num_rows": summary.get("num_rows"),
            "model_version": summary.get("model_version"),
            "summary": str(folder / "summary.json"),
        },
        "retrain": outcome,
    }
