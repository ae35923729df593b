"""The offline loop: monitor, shadow report, retrain and simulate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tagops.cli.context import load_settings
from tagops.cli.output import command_group, print_json, stdout_to_stderr
from tagops.errors import TagopsError

shadow_app = command_group("Compare the champion with the model it runs in shadow.")
#: `tagops monitor --fail-on-alarm` exits with this when the window alarms (1 and 2 are errors and usage).
ALARM_EXIT_CODE = 3


def monitor(
    since: Annotated[
        str | None, typer.Option(help="Window start, ISO 8601 (UTC if no zone; default: until - window).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Window end, ISO 8601 (default: now).")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="models:/NAME@ALIAS, models:/NAME/N or a reference_stats.json (default: config)."),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Folder for summary.json and report.html.")] = None,
    config: Annotated[Path | None, typer.Option(help="Monitoring config YAML (thresholds, webhook).")] = None,
    pipeline: Annotated[bool, typer.Option(help="Run as a ZenML pipeline (else in this process).")] = True,
    fail_on_alarm: Annotated[
        bool, typer.Option(help="Exit with status 3 when the window alarms (for cron jobs and CI).")
    ] = False,
) -> None:
    """Drift and performance of a window of the prediction log against the model's reference statistics.

    Exits 0 with the summary on stdout whether or not the window alarms (the alarm is in the JSON, the log
    and the webhook); with ``--fail-on-alarm`` an alarm exits 3, so a scheduler can act on it.
    """
    from tagops.config import MonitorConfig, load_config
    from tagops.workloads.monitor import parse_time, resolve_window

    try:
        cfg = load_config(MonitorConfig, config, model_uri=model)
    except ValueError as error:  # a pydantic ValidationError names every bad field
        raise typer.BadParameter(str(error)) from error
    start, end = resolve_window(
        parse_time(since, name="--since") if since else None,
        parse_time(until, name="--until") if until else None,
        cfg,
    )
    settings = load_settings(announce_log=True)
    target = output or settings.reports_dir / f"monitor-{end:%Y%m%d-%H%M%S}"
    if pipeline:
        from tagops.pipelines.monitoring import run_monitoring_pipeline

        with stdout_to_stderr():
            summary = run_monitoring_pipeline(cfg, since=start, until=end, output_dir=target)
    else:
        from tagops.workloads.monitor import run_monitor

        summary = dict(run_monitor(cfg, settings, since=start, until=end, output_dir=target).summary)
    print_json(
        {
            "alarm": summary["alarm"],
            "drifted": summary["drifted"],
            "performance_alarm": summary["performance_alarm"],
            "num_rows": summary["num_rows"],
            "model_version": summary["model_version"],
            "summary": str(target / "summary.json"),
            "report": str(target / "report.html"),
            "mlflow_run_id": summary.get("mlflow_run_id"),
        }
    )
    if fail_on_alarm and summary["alarm"]:
        raise typer.Exit(ALARM_EXIT_CODE)


@shadow_app.command("report")
def shadow_report_cmd(
    since: Annotated[
        str | None, typer.Option(help="Window start, ISO 8601 (UTC if no zone; default: until - window).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Window end, ISO 8601 (default: now).")] = None,
    output: Annotated[Path | None, typer.Option(help="JSON file to write.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="Monitoring config YAML (database, window, bootstrap samples).")
    ] = None,
) -> None:
    """Champion vs shadow on live traffic: agreement, confidence, F1 where feedback exists, latency."""
    from rich.console import Console

    from tagops.config import MonitorConfig, load_config
    from tagops.monitoring.shadow import render_table, shadow_report
    from tagops.workloads.monitor import parse_time, resolve_window

    try:
        cfg = load_config(MonitorConfig, config)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    start, end = resolve_window(
        parse_time(since, name="--since") if since else None,
        parse_time(until, name="--until") if until else None,
        cfg,
    )
    settings = load_settings()
    target = output or settings.reports_dir / f"shadow-{end:%Y%m%d-%H%M%S}.json"
    report = shadow_report(cfg, settings, since=start, until=end, output=target)
    Console(stderr=True, width=max(100, Console().width)).print(render_table(report))
    print_json({"report": str(target), "rows": report["rows"], "comparisons": report["comparisons"]})


def retrain(
    if_needed: Annotated[
        bool, typer.Option(help="Consult the policy (configs/loop.yaml: on_alert, schedule, manual) first.")
    ] = False,
    summary: Annotated[
        Path | None, typer.Option(help="Monitor summary.json to consult (default: the newest report's).")
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Promote if both gates pass (--no-promote: register the challenger only).")
    ] = True,
    config: Annotated[Path | None, typer.Option(help="Loop or retrain config YAML.")] = None,
    model: Annotated[str | None, typer.Option(help="Model family (default: the config's).")] = None,
    pipeline: Annotated[bool, typer.Option(help="Run as a ZenML pipeline (else in this process).")] = True,
) -> None:
    """Retrain on the original data + feedback; gate on holdout and recent window; promote; reload."""
    from tagops.config import RetrainConfig, load_config
    from tagops.registry.client import Registry
    from tagops.workloads.retrain import decide, feedback_stage, run_retrain

    try:
        cfg = load_config(RetrainConfig, config)
        if model is not None:
            raw = cfg.model_dump(mode="json")
            raw["train"]["model"] = {"family": model}
            cfg = type(cfg).model_validate(raw)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    loaded = None
    if summary is not None:
        try:
            loaded = json.loads(summary.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise TagopsError(f"{summary}: cannot read the monitor summary: {error}") from error
    settings = load_settings(announce_log=True)
    if not pipeline:
        result = run_retrain(cfg, settings, if_needed=if_needed, summary=loaded, promote=promote)
        print_json(result.to_json())
        return
    counts = feedback_stage(settings, cfg)[-1]
    decision = decide(cfg, settings, Registry(settings), if_needed=if_needed, summary=loaded, counts=counts)
    if not decision.run:
        print_json({"decision": {"run": False, "reason": decision.reason}, "counts": counts})
        return
    from tagops.pipelines.retraining import run_retraining_pipeline

    with stdout_to_stderr():
        outcome = run_retraining_pipeline(cfg, trigger=decision.reason, promote=promote)
    print_json(outcome)


def simulate(
    family: Annotated[str | None, typer.Option(help="Model family (default: the config's, linear).")] = None,
    windows: Annotated[
        int | None, typer.Option(help="Shifted windows with feedback before the retrain.", min=1)
    ] = None,
    window_rows: Annotated[int | None, typer.Option(help="Requests' items per window.", min=20)] = None,
    port: Annotated[int | None, typer.Option(help="Service port on 127.0.0.1 (0: any free port).")] = None,
    engine: Annotated[str | None, typer.Option(help="uvicorn (default) or ray (Ray Serve).")] = None,
    config: Annotated[Path | None, typer.Option(help="Loop config YAML (configs/loop.yaml).")] = None,
    home: Annotated[
        Path | None, typer.Option(help="State folder of the run (default: a new one under TAGOPS_HOME).")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="JSON result to write.")] = None,
) -> None:
    """Replay traffic through a service it starts: drift, retrain, shadow, promote, reload; before/after."""
    from tagops.config import SimulateConfig, load_config
    from tagops.simulation.loop import run_simulation

    try:
        cfg = load_config(
            SimulateConfig,
            config,
            family=family,
            shifted_windows=windows,
            window_rows=window_rows,
            port=port,
            engine=engine,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    settings = load_settings(announce_log=True)
    result = run_simulation(cfg, settings, home=home, output=output)
    shown = ("verdict", "output", "home", "wall_s", "before_after", "rows")
    print_json({k: v for k, v in result.items() if k in shown})
