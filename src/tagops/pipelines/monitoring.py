"""The monitoring pipeline: load the model's reference → read the window → test, report, log, alert.

``tagops monitor [--since ISO] [--until ISO] [--model URI]`` runs it on ZenML's local stack under
``TAGOPS_HOME/zenml`` (``--no-pipeline`` runs the same functions in-process). Steps only translate
between ZenML artifacts and :mod:`tagops.workloads.monitor`. Nothing is cached: the prediction log and
the registry change between runs, and publishing talks to MLflow and the webhook.
"""

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from zenml import pipeline, step

from tagops.config import MonitorConfig
from tagops.settings import Settings


@step(enable_cache=False)
def reference_step(
    config: dict[str, Any],
) -> tuple[Annotated[dict[str, Any], "reference"], Annotated[int | None, "model_version"]]:
    """The reference statistics stored with the model the config names, and its registry version."""
    from tagops.workloads.monitor import load_reference_stats

    cfg = MonitorConfig.model_validate(config)
    reference, version = load_reference_stats(cfg.model_uri, Settings())
    return reference, version


@step(enable_cache=False)
def window_step(
    config: dict[str, Any], since: str, until: str, model_version: int | None
) -> Annotated[dict[str, Any], "window"]:
    """The window's predictions and feedback from the prediction log (read-only)."""
    from tagops.predlog.log import PredictionLog
    from tagops.workloads.monitor import read_window

    cfg = MonitorConfig.model_validate(config)
    with PredictionLog.from_config(cfg, Settings()) as log:
        log.create_tables()
        window = read_window(
            log.reader,
            since=datetime.fromisoformat(since),
            until=datetime.fromisoformat(until),
            model_version=model_version if cfg.only_model_version else None,
        )
    return {
        "since": since,
        "until": until,
        "texts": window.texts,
        "predicted_tags": window.predicted_tags,
        "confidences": window.confidences,
        "feedback": [list(pair) for pair in window.feedback],
    }


@step(enable_cache=False)
def monitor_step(
    config: dict[str, Any],
    reference: dict[str, Any],
    window: dict[str, Any],
    model_version: int | None,
    output_dir: str,
) -> Annotated[dict[str, Any], "summary"]:
    """Run the drift tests; write the JSON summary and HTML report, log to MLflow, alert on an alarm."""
    from tagops.registry.client import Registry
    from tagops.workloads.monitor import Window, analyse_window, publish

    cfg = MonitorConfig.model_validate(config)
    frame = Window(
        since=datetime.fromisoformat(window["since"]),
        until=datetime.fromisoformat(window["until"]),
        texts=window["texts"],
        predicted_tags=window["predicted_tags"],
        confidences=window["confidences"],
        feedback=[(str(t), str(p)) for t, p in window["feedback"]],
    )
    report, features = analyse_window(reference, frame, cfg)
    result = publish(
        report,
        frame,
        features,
        reference,
        cfg,
        output_dir=Path(output_dir),
        model_uri=cfg.model_uri,
        model_version=model_version,
        registry=Registry(Settings()),
    )
    return result.summary


@pipeline(enable_cache=False)
def monitoring_pipeline(config: dict[str, Any], since: str, until: str, output_dir: str) -> None:
    """One monitoring window of the serving model."""
    reference, version = reference_step(config)
    window = window_step(config, since, until, version)
    monitor_step(config, reference, window, version, output_dir)


def run_monitoring_pipeline(
    cfg: MonitorConfig, *, since: datetime, until: datetime, output_dir: Path
) -> dict[str, Any]:
    """Run the pipeline for ``[since, until)`` and return the window's JSON summary."""
    run = monitoring_pipeline(
        config=cfg.model_dump(mode="json"),
        since=since.isoformat(),
        until=until.isoformat(),
        output_dir=str(output_dir),
    )
    if run is None:  # only remote, asynchronous orchestrators return nothing
        raise RuntimeError("the ZenML orchestrator returned no pipeline run")
    summary: dict[str, Any] = run.steps["monitor_step"].outputs["summary"][0].load()
    return summary
