"""The offline loop: monitor, shadow report, retrain and simulate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tagops.cli.context import describe_invalid, load_settings, read_config
from tagops.cli.exit_codes import ExitCode
from tagops.cli.output import command_group, output_file, output_folder, print_json, stdout_to_stderr
from tagops.cli.params import SinceOption, UntilOption
from tagops.errors import TagopsError

shadow_app = command_group("Compare the champion with the model it runs in shadow.")
loop_app = command_group("The loop without a person: monitor, then retrain --if-needed, on a schedule.")


def monitor(
    since: SinceOption = None,
    until: UntilOption = None,
    model: Annotated[
        str | None,
        typer.Option(help="models:/NAME@ALIAS, models:/NAME/N or a reference_stats.json (default: config)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Folder for summary.json and report.html.", callback=output_folder)
    ] = None,
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
    from tagops.config import MonitorConfig
    from tagops.pipelines.loop import monitor_once

    cfg = read_config(MonitorConfig, config, model_uri=model)
    settings = load_settings(announce_log=True)
    with stdout_to_stderr():
        summary, target = monitor_once(
            cfg, settings, since=since, until=until, output_dir=output, pipeline=pipeline
        )
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
        raise typer.Exit(ExitCode.ALARM)


@shadow_app.command("report")
def shadow_report_cmd(
    since: SinceOption = None,
    until: UntilOption = None,
    output: Annotated[Path | None, typer.Option(help="JSON file to write.", callback=output_file)] = None,
    config: Annotated[
        Path | None, typer.Option(help="Monitoring config YAML (database, window, bootstrap samples).")
    ] = None,
) -> None:
    """Champion vs shadow on live traffic: agreement, confidence, F1 where feedback exists, latency."""
    from rich.console import Console

    from tagops.config import MonitorConfig
    from tagops.monitoring.shadow import render_table, shadow_report
    from tagops.workloads.monitor import resolve_window

    cfg = read_config(MonitorConfig, config)
    start, end = resolve_window(since, until, cfg)
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
    from tagops.cli.progress import CommandProgress, wanted
    from tagops.config import RetrainConfig
    from tagops.pipelines.loop import retrain_once

    try:
        cfg = read_config(RetrainConfig, config)
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
    # At a terminal, bars follow the pipeline's steps and a transformer's epochs.
    with (
        CommandProgress(enabled=wanted()) as progress,
        progress.steps(),
        progress.epochs(),
        stdout_to_stderr(),
    ):
        outcome = retrain_once(
            cfg, settings, if_needed=if_needed, summary=loaded, promote=promote, pipeline=pipeline
        )
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
    output: Annotated[Path | None, typer.Option(help="JSON result to write.", callback=output_file)] = None,
) -> None:
    """Replay traffic through a service it starts: drift, retrain, shadow, promote, reload; before/after."""
    from tagops.config import SimulateConfig
    from tagops.simulation.loop import run_simulation

    try:
        cfg = read_config(
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


@loop_app.command("run")
def loop_run(
    every: Annotated[
        str | None, typer.Option(help="Period between turns: 30s, 15m, 1h, 1d (default: the config's, 15m).")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="One turn, then exit (for cron, a Kubernetes CronJob, CI).")
    ] = False,
    max_turns: Annotated[int | None, typer.Option(help="Stop after this many turns.", min=1)] = None,
    config: Annotated[
        Path | None, typer.Option(help="Loop config YAML: its monitor, retrain and schedule sections.")
    ] = None,
    pipeline: Annotated[
        bool | None, typer.Option(help="Run monitor and retrain as ZenML pipelines (default: the config's).")
    ] = None,
) -> None:
    """Every period: monitor the last window, then retrain --if-needed with its summary; never two at once.

    Each turn is a JSON line of TAGOPS_HOME/logs/loop.jsonl (`tagops loop log`). A turn finding another
    running (same home, or the same team registry) is skipped. SIGTERM and SIGINT stop the loop after the
    running turn. Exit status: 0, or 1 when the last turn failed.
    """
    import signal

    from pydantic import ValidationError

    from tagops.config import ScheduleConfig, SimulateConfig
    from tagops.pipelines.loop import loop_turn
    from tagops.registry.client import Registry
    from tagops.workloads.schedule import Schedule, registry_lease, run_schedule

    cfg = read_config(SimulateConfig, config)
    given = {"every": every, "pipeline": pipeline}
    raw = {**cfg.schedule.model_dump(), **{k: v for k, v in given.items() if v is not None}}
    try:
        schedule_cfg = ScheduleConfig.model_validate(raw)
    except ValidationError as error:  # the file's schedule was valid: an option's value is at fault
        raise typer.BadParameter(describe_invalid(error, "the command line", raw)) from error
    settings = load_settings(announce_log=True)
    registry = Registry(settings)
    schedule = Schedule(
        turn=lambda: loop_turn(cfg, settings, pipeline=schedule_cfg.pipeline),
        every_s=schedule_cfg.every_s,
        lock_path=settings.home / "loop.lock",
        log_path=loop_log_path(settings.home),
        lease=lambda: registry_lease(registry, ttl_s=schedule_cfg.lease_ttl_s),
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: schedule.stop.set())
    with stdout_to_stderr():
        records = run_schedule(schedule, max_turns=1 if once else max_turns)
    last = records[-1].to_json() if records else None
    print_json({"turns": len(records), "every": schedule_cfg.every, "last": last})
    if last is not None and last["status"] == "failed":
        raise typer.Exit(ExitCode.ERROR)


def loop_log_path(home: Path) -> Path:
    """Where the scheduler writes its turns."""
    return home / "logs" / "loop.jsonl"


@loop_app.command("log")
def loop_log(
    last: Annotated[int, typer.Option(help="The newest turns to show.", min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """The scheduler's last turns: when, how they ended, and what the monitor and the policy decided."""
    from tagops.workloads.schedule import read_records

    settings = load_settings()
    records = read_records(loop_log_path(settings.home), last=last)
    if as_json:
        for record in records:
            typer.echo(json.dumps(record, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("turn", "started", "status", "s", "window rows", "alarm", "retrain", title="tagops loop")
    for record in records:
        result = record.get("result") or {}
        monitor_part = result.get("monitor") or {}
        retrain_part = result.get("retrain") or {}
        decision = retrain_part.get("decision") or {}
        retrained = (
            f"promoted v{retrain_part.get('challenger_version')}"
            if retrain_part.get("promoted")
            else str(decision.get("reason") or record.get("error") or "")
        )
        table.add_row(
            str(record.get("turn")),
            str(record.get("started_at")),
            str(record.get("status")),
            f"{record.get('seconds', 0):.1f}",
            str(monitor_part.get("num_rows", "")),
            str(monitor_part.get("alarm", "")),
            retrained[:60],
        )
    Console(width=max(120, Console().width)).print(table)
