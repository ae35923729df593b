"""The monitoring pipeline: :func:`tagops.workloads.monitor.monitor_plan` as a ZenML pipeline.

``tagops monitor [--since ISO] [--until ISO] [--model URI]`` runs it on ZenML's local stack under
``TAGOPS_HOME/zenml`` (``--no-pipeline`` runs the same stages in-process). Each step only translates
between ZenML artifacts and one stage of :mod:`tagops.workloads.monitor`. Nothing is cached: the
prediction log and the registry change between runs, and publishing talks to MLflow and the webhook.
"""

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from zenml import pipeline, step

from tagops.config import MonitorConfig
from tagops.pipelines.adapter import (
    ensure_source_root,
    from_parameter,
    run_settings,
    secrets_for_steps,
    to_parameter,
    wire,
)
from tagops.workloads.monitor import monitor_plan


@step(enable_cache=False)
def reference_step(
    monitor: dict[str, Any],
) -> tuple[Annotated[dict[str, Any], "reference"], Annotated[int | None, "model_version"]]:
    """The reference statistics stored with the model the config names, and its registry version."""
    from tagops.workloads.monitor import reference_stage

    reference, version = reference_stage(run_settings(), from_parameter(MonitorConfig, monitor))
    return reference, version


@step(enable_cache=False)
def window_step(
    monitor: dict[str, Any], since: str, until: str, model_version: int | None
) -> Annotated[dict[str, Any], "window"]:
    """The window's predictions and feedback from the prediction log (read-only)."""
    from tagops.workloads.monitor import window_stage

    cfg = from_parameter(MonitorConfig, monitor)
    return window_stage(run_settings(), cfg, since, until, model_version).to_json()


@step(enable_cache=False)
def monitor_step(
    monitor: dict[str, Any],
    reference: dict[str, Any],
    window: dict[str, Any],
    model_version: int | None,
    output_dir: str,
    log_to_mlflow: bool,
) -> Annotated[dict[str, Any], "summary"]:
    """Run the drift tests; write the JSON summary and HTML report, log to MLflow, alert on an alarm."""
    from tagops.workloads.monitor import Window, monitor_stage

    cfg = from_parameter(MonitorConfig, monitor)
    result = monitor_stage(
        run_settings(),
        cfg,
        reference,
        Window.from_json(window),
        model_version,
        output_dir,
        log_to_mlflow=log_to_mlflow,
    )
    return dict(result.summary)


#: The step that runs each stage function of the monitoring plan.
STEPS = {"reference_stage": reference_step, "window_stage": window_step, "monitor_stage": monitor_step}


@pipeline(enable_cache=False)
def monitoring_pipeline(config: dict[str, Any], since: str, until: str, output_dir: str) -> None:
    """One monitoring window of the serving model."""
    plan = monitor_plan(
        from_parameter(MonitorConfig, config),
        since=datetime.fromisoformat(since),
        until=datetime.fromisoformat(until),
        output_dir=Path(output_dir),
    )
    wire(plan, STEPS)


def run_monitoring_pipeline(
    cfg: MonitorConfig, *, since: datetime, until: datetime, output_dir: Path
) -> dict[str, Any]:
    """Run the pipeline for ``[since, until)`` and return the window's JSON summary."""
    ensure_source_root()
    with secrets_for_steps(cfg):
        run = monitoring_pipeline(
            config=to_parameter(cfg),
            since=since.isoformat(),
            until=until.isoformat(),
            output_dir=str(output_dir),
        )
    if run is None:  # only remote, asynchronous orchestrators return nothing
        raise RuntimeError("the ZenML orchestrator returned no pipeline run")
    summary: dict[str, Any] = run.steps["monitor_step"].outputs["summary"][0].load()
    return summary
