"""The `tagops` command line: the one place that configures logging and prepares the environment.

Heavy libraries (pandas, scikit-learn, mlflow, zenml, ray, torch) are imported inside commands, so
`tagops --help` answers at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tagops.errors import DataError, TagopsError
from tagops.registry.reference import DEFAULT_MODEL_URI

app = typer.Typer(
    help="tagops: tag ML projects with their topic, end to end.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Get, validate and explore the data.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Run ZenML pipelines.", no_args_is_help=True)
models_app = typer.Typer(help="Inspect the model registry.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage the API keys of the prediction API.", no_args_is_help=True)
shadow_app = typer.Typer(help="Compare the champion with the model it runs in shadow.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
app.add_typer(shadow_app, name="shadow")

logger = logging.getLogger("tagops")
#: `tagops monitor --fail-on-alarm` exits with this when the window alarms (1 and 2 are errors and usage).
ALARM_EXIT_CODE = 3


def _settings() -> Any:
    from tagops.settings import Settings, prepare_environment

    settings = Settings()
    prepare_environment(settings)
    return settings


@app.callback()
def _configure(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Configure logging once for every command."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("mlflow", "zenml", "alembic", "urllib3", "matplotlib", "PIL", "httpx", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


# ---------------------------------------------------------------------------------------------- data
@data_app.command("pull")
def data_pull(
    mirror: Annotated[Path | None, typer.Option(help="Copy from this folder instead of downloading.")] = None,
) -> None:
    """Fetch the four data files, verify their sha256 and store them read-only under TAGOPS_HOME."""
    from tagops.data.ingest import pull_data

    settings = _settings()
    paths = pull_data(settings.data_dir, mirror=mirror or settings.data_mirror, base_url=settings.data_url)
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")


@data_app.command("validate")
def data_validate(
    path: Annotated[Path, typer.Argument(help="CSV file to check.")],
    against: Annotated[
        Path | None, typer.Option(help="Also check leakage (shared ids or texts) with this file.")
    ] = None,
    unlabelled: Annotated[bool, typer.Option(help="The file has no 'tag' column.")] = False,
) -> None:
    """Check a file against the data contract; every violation is printed with file, row and column."""
    from tagops.data.validate import check_no_leakage, load_projects

    frame = load_projects(path, labelled=not unlabelled)
    if against is not None:
        other = load_projects(against, labelled=not unlabelled)
        check_no_leakage(frame, other, file=str(path), other_file=str(against))
    typer.echo(f"{path}: {len(frame)} rows valid" + (f", no leakage with {against}" if against else ""))


@data_app.command("explore")
def data_explore(
    data: Annotated[Path | None, typer.Option(help="Labelled CSV (default: the pulled dataset.csv).")] = None,
    output: Annotated[Path | None, typer.Option(help="HTML file to write.")] = None,
) -> None:
    """Write an HTML report: class balance, text length per class, top terms per class."""
    from tagops.config import DataConfig
    from tagops.data.explore import write_explore_report
    from tagops.data.stages import pull_stage
    from tagops.data.validate import load_projects

    settings = _settings()
    path = data or pull_stage(settings, DataConfig()).dataset_path
    target = output or settings.reports_dir / f"explore-{path.stem}.html"
    write_explore_report(load_projects(path), target, title=f"Exploring {path.name}")
    typer.echo(str(target))


# --------------------------------------------------------------------------------------------- train
@app.command()
def train(
    model: Annotated[
        str | None,
        typer.Option(help="Model family: rules, linear or transformer (default: the config's)."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Training config YAML.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the config's seed.")] = None,
    register: Annotated[bool, typer.Option(help="Log to MLflow and register as challenger.")] = True,
    num_workers: Annotated[
        int | None, typer.Option(help="Transformer: Ray Train workers (DDP).", min=1)
    ] = None,
    cpus_per_worker: Annotated[
        int | None, typer.Option(help="Transformer: CPUs (and torch threads) per worker.", min=1)
    ] = None,
    gpus_per_worker: Annotated[
        float | None, typer.Option(help="Transformer: GPUs per worker (default: 1 if the cluster has one).")
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue an interrupted run by name, from its last checkpoint.")
    ] = None,
) -> None:
    """Train one model, evaluate it on validation and holdout, register it as `challenger`."""
    from tagops.config import TrainConfig, load_config

    settings = _settings()
    registry = None
    if register:
        from tagops.registry.client import Registry

        registry = Registry(settings)
    if resume is not None:
        from tagops.workloads.train import resume_training

        result = resume_training(resume, settings, registry=registry)
    else:
        from tagops.workloads.train import run_training

        overrides: dict[str, Any] = {"seed": seed}
        cfg = load_config(TrainConfig, config, **overrides)
        if model is not None and cfg.model.family != model:
            cfg = load_config(TrainConfig, config, **overrides, model={"family": model})
        scaling = {
            "num_workers": num_workers,
            "cpus_per_worker": cpus_per_worker,
            "gpus_per_worker": gpus_per_worker,
        }
        scaling = {k: v for k, v in scaling.items() if v is not None}
        if scaling:
            if cfg.model.family != "transformer":
                raise typer.BadParameter("only the transformer family trains on Ray workers")
            raw = cfg.model_dump(mode="json")
            raw["model"].update(scaling)
            cfg = type(cfg).model_validate(raw)
        result = run_training(cfg, settings, registry=registry)
    _print_json(
        {
            "family": result.family,
            "model_dir": result.model_dir,
            "run_id": result.run_id,
            "version": result.version,
            "val_f1": result.val_report["overall"]["f1"],
            "holdout_f1": result.holdout_report["overall"]["f1"],
        }
    )


@app.command()
def evaluate(
    output: Annotated[Path, typer.Option(help="JSON report to write (plots go next to it).")],
    model: Annotated[
        str, typer.Option(help="models:/NAME@ALIAS, models:/NAME/N or a model folder.")
    ] = DEFAULT_MODEL_URI,
    data: Annotated[Path | None, typer.Option(help="Labelled CSV (default: the pulled holdout.csv).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Abstain to 'other' below this confidence.")] = None,
    log_to_mlflow: Annotated[bool, typer.Option(help="Also log the report as an MLflow run.")] = True,
) -> None:
    """Evaluate a model: overall, per-class, slices, calibration, confusion matrix, bootstrap CI."""
    from tagops.config import DataConfig, EvalConfig
    from tagops.data.stages import pull_stage
    from tagops.data.validate import load_projects
    from tagops.inference.loading import load_predictor
    from tagops.metrics import write_report
    from tagops.workloads.evaluate import evaluate_predictor

    settings = _settings()
    path = data or pull_stage(settings, DataConfig()).holdout_path
    cfg = EvalConfig(threshold=threshold)
    predictor = load_predictor(model, settings, threshold=threshold)
    report = evaluate_predictor(predictor, load_projects(path), cfg)
    report["data"] = str(path)
    files = write_report(report, output)
    if log_to_mlflow:
        from tagops.registry.client import Registry

        registry = Registry(settings)
        with registry.start_run(f"evaluate-{path.stem}", tags={"model_uri": model, "data": str(path)}):
            registry.log_metrics(
                {k: v for k, v in report["overall"].items() if k != "f1_ci95"}, prefix="eval."
            )
            registry.log_artifacts(files, artifact_path="evaluation")
    overall = report["overall"]
    typer.echo(
        f"{output}: f1 {overall['f1']:.4f} (95% CI {overall['f1_ci95']}), macro f1 "
        f"{overall['macro_f1']:.4f}, n={overall['num_samples']}"
    )


@app.command()
def predict(
    title: Annotated[str | None, typer.Option(help="Project title.")] = None,
    description: Annotated[str, typer.Option(help="Project description.")] = "",
    input_path: Annotated[Path | None, typer.Option("--input", help="CSV or JSONL file of items.")] = None,
    output: Annotated[Path | None, typer.Option(help="Where to write predictions for --input.")] = None,
    model: Annotated[
        str, typer.Option(help="models:/NAME@ALIAS, models:/NAME/N or a model folder.")
    ] = DEFAULT_MODEL_URI,
    threshold: Annotated[float | None, typer.Option(help="Abstain to 'other' below this confidence.")] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="For --input: local (this process), ray (Ray Data actor pool) or auto (ray for a "
            "transformer over a large file)."
        ),
    ] = "auto",
) -> None:
    """Predict one item (JSON to stdout) or a whole file (`--input` and `--output`)."""
    from tagops.inference.loading import load_predictor

    if (title is None) == (input_path is None):
        raise typer.BadParameter("give either --title (and --description) or --input with --output")
    if input_path is not None and output is None:
        raise typer.BadParameter("--input needs --output")
    if title is not None and not (title.strip() or description.strip()):
        raise typer.BadParameter("empty title and description", param_hint="--title")
    settings = _settings()
    predictor = load_predictor(model, settings, threshold=threshold)
    if title is not None:
        result = predictor.predict([title], [description])[0]
        _print_json({**result, "model": predictor.describe()})
        return
    assert input_path is not None and output is not None
    from tagops.workloads import batch

    if engine not in ("auto", "local", "ray"):
        raise typer.BadParameter("use auto, local or ray", param_hint="--engine")
    count = batch.predict_file(predictor, input_path, output, settings, engine=engine)
    typer.echo(f"{output}: {count} predictions")


@app.command()
def tune(
    model: Annotated[str, typer.Option(help="Model family to tune: transformer or linear.")] = "transformer",
    trials: Annotated[int | None, typer.Option(help="Trials to run (default: the config's).", min=1)] = None,
    config: Annotated[Path | None, typer.Option(help="Tuning config YAML (search space, budget).")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the config's seed.")] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue an interrupted search by name (finished trials are kept).")
    ] = None,
    register: Annotated[
        bool, typer.Option(help="Train the best trial, register it as challenger and run the gate.")
    ] = True,
) -> None:
    """Search hyper-parameters with Ray Tune (Optuna + ASHA); the best becomes challenger and is gated."""
    from rich.console import Console
    from rich.table import Table

    from tagops.config import TuneConfig, load_config
    from tagops.workloads.tune import TUNE_RECORD, run_tuning, tune_dir

    if model not in ("transformer", "linear"):
        raise typer.BadParameter("tune supports transformer or linear", param_hint="--model")
    settings = _settings()
    if resume is not None:
        record_path = tune_dir(settings) / resume / TUNE_RECORD
        if not record_path.is_file():
            raise TagopsError(f"no tuning run {resume!r} under {tune_dir(settings)}")
        record = json.loads(record_path.read_text(encoding="utf-8"))
        cfg, model = TuneConfig.model_validate(record["config"]), record["family"]
    else:
        cfg = load_config(TuneConfig, config, trials=trials, seed=seed)
    registry = None
    if register:
        from tagops.registry.client import Registry

        registry = Registry(settings)
    started = time.perf_counter()
    family: Any = model
    with _stdout_to_stderr():  # Ray Tune prints its own tables; stdout carries only our JSON
        result = run_tuning(
            cfg, settings, family=family, registry=registry, name=resume, resume=resume is not None
        )
    table = Table(title=f"{result.name} ({time.perf_counter() - started:.0f}s)")
    for column in ("trial", "val F1", "epochs", "parameters"):
        table.add_column(column)
    for trial in result.trials:
        f1 = trial["best_val_f1"]
        label = "default" if trial["default"] else str(trial["index"])
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(trial["config"].items())
        )
        table.add_row(label, "" if f1 is None else f"{f1:.4f}", str(trial["epochs"]), params)
    Console(stderr=True, width=max(120, Console(stderr=True).width)).print(table)
    _print_json(
        {
            "name": result.name,
            "family": result.family,
            "best_val_f1": result.best_val_f1,
            "default_val_f1": result.default_val_f1,
            "best_params": result.best_params,
            "version": result.version,
            "holdout_f1": result.holdout_f1,
            "gate": result.gate,
        }
    )


# ---------------------------------------------------------------------------------------- registry
@app.command("promote")
def promote_cmd(
    version: Annotated[int | None, typer.Option(help="Version to gate (default: the challenger).")] = None,
    config: Annotated[Path | None, typer.Option(help="Pipeline config YAML (gate and evaluation).")] = None,
) -> None:
    """Gate the challenger against the champion on the holdout; promote only if it passes."""
    from tagops.config import PipelineConfig, load_config
    from tagops.data.stages import pull_stage, validate_stage
    from tagops.registry.client import Registry
    from tagops.workloads.promote import promote

    settings = _settings()
    cfg = load_config(PipelineConfig, config)
    snap = pull_stage(settings, cfg.data)
    _, holdout = validate_stage(snap)
    decision = promote(
        Registry(settings),
        holdout=holdout,
        eval_cfg=cfg.evaluation,
        gate=cfg.gate,
        history=settings.promotion_history,
        version=version,
        holdout_sha256=snap.holdout_sha256,
    )
    verdict = "promoted" if decision.promote else "not promoted"
    typer.echo(f"{verdict}: {decision.reason}")


@app.command()
def rollback() -> None:
    """Restore the champion that preceded the current one."""
    from tagops.registry.client import Registry
    from tagops.workloads.promote import rollback as do_rollback

    settings = _settings()
    before, after = do_rollback(Registry(settings), history=settings.promotion_history)
    typer.echo(f"champion: version {before} -> version {after}")


@models_app.command("list")
def models_list() -> None:
    """Registered versions with their aliases and holdout F1."""
    from rich.console import Console
    from rich.table import Table

    from tagops.registry.client import Registry

    settings = _settings()
    table = Table(title=f"models:/{settings.registered_model}")
    for column in ("version", "family", "aliases", "holdout F1", "gate", "run"):
        table.add_column(column)
    for v in Registry(settings).list_versions():
        table.add_row(
            str(v["version"]),
            v["tags"].get("family", "?"),
            ", ".join(v["aliases"]),
            v["tags"].get("holdout_f1", ""),
            v["tags"].get("gate.decision", ""),
            v["run_id"] or "",
        )
    Console().print(table)


@models_app.command("history")
def models_history() -> None:
    """The append-only promotion history (JSON lines)."""
    from tagops.workloads.promote import read_history

    for record in read_history(_settings().promotion_history):
        typer.echo(json.dumps(record, sort_keys=True))


# ---------------------------------------------------------------------------------------- pipeline
@pipeline_app.command("train")
def pipeline_train(
    config: Annotated[Path | None, typer.Option(help="Pipeline config YAML.")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse unchanged steps.")] = True,
) -> None:
    """Pull → validate → split → train each family → evaluate → register → gate, on ZenML."""
    from rich.console import Console
    from rich.table import Table

    from tagops.config import PipelineConfig, load_config
    from tagops.data.stages import pull_stage, validate_stage

    settings = _settings()
    cfg = load_config(PipelineConfig, config)
    # Pre-flight outside ZenML (about a second): bad data fails here with the one-line file/row/column
    # message, before any step runs or anything is registered.
    validate_stage(pull_stage(settings, cfg.data))
    from tagops.pipelines.training import run_training_pipeline

    started = time.perf_counter()
    summary = run_training_pipeline(cfg, enable_cache=cache)
    from tagops.registry.client import CHAMPION, Registry

    champion = Registry(settings).alias_version(CHAMPION)
    table = Table(title=f"{summary['run_name']} ({time.perf_counter() - started:.0f}s)")
    for column in ("family", "version", "holdout F1", "95% CI", "macro F1", "gate", "champion"):
        table.add_column(column)
    decisions = {d["version"]: d for d in summary["decisions"]}
    for m in summary["models"]:
        ci = m["f1_ci95"]
        decision = decisions.get(m["version"], {})
        table.add_row(
            m["family"],
            str(m["version"]),
            f"{m['holdout_f1']:.4f}",
            f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "",
            f"{m['holdout_macro_f1']:.4f}",
            "pass" if decision.get("promote") else "fail",
            "yes" if m["version"] == champion else "",
        )
    Console(width=max(100, Console().width)).print(table)
    for m in summary["models"]:
        decision = decisions.get(m["version"], {})
        typer.echo(f"gate {m['family']} (version {m['version']}): {decision.get('reason', 'not gated')}")
    typer.echo(f"champion: models:/{settings.registered_model}/{champion}")


# ---------------------------------------------------------------------------------------- monitoring
@app.command()
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
    settings = _settings()
    target = output or settings.reports_dir / f"monitor-{end:%Y%m%d-%H%M%S}"
    if pipeline:
        import os

        from tagops.pipelines.monitoring import run_monitoring_pipeline

        # ZenML echoes step logs to the process's stdout; ours carries the JSON, so fd 1 points at stderr
        # while the pipeline runs.
        sys.stdout.flush()
        saved_stdout = os.dup(1)
        os.dup2(2, 1)
        try:
            summary = run_monitoring_pipeline(cfg, since=start, until=end, output_dir=target)
        finally:
            sys.stdout.flush()
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)
    else:
        from tagops.workloads.monitor import run_monitor

        summary = run_monitor(cfg, settings, since=start, until=end, output_dir=target).summary
    _print_json(
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


@contextlib.contextmanager
def _stdout_to_stderr() -> Any:
    """Point fd 1 at stderr while ZenML runs: it echoes step logs to stdout, which carries our JSON."""
    import os

    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)


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
    settings = _settings()
    target = output or settings.reports_dir / f"shadow-{end:%Y%m%d-%H%M%S}.json"
    report = shadow_report(cfg, settings, since=start, until=end, output=target)
    Console(stderr=True, width=max(100, Console().width)).print(render_table(report))
    _print_json({"report": str(target), "rows": report["rows"], "comparisons": report["comparisons"]})


@app.command()
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
    settings = _settings()
    if not pipeline:
        result = run_retrain(cfg, settings, if_needed=if_needed, summary=loaded, promote=promote)
        _print_json(result.to_json())
        return
    counts = feedback_stage(settings, cfg)[-1]
    decision = decide(cfg, settings, Registry(settings), if_needed=if_needed, summary=loaded, counts=counts)
    if not decision.run:
        _print_json({"decision": {"run": False, "reason": decision.reason}, "counts": counts})
        return
    from tagops.pipelines.retraining import run_retraining_pipeline

    with _stdout_to_stderr():
        outcome = run_retraining_pipeline(cfg, trigger=decision.reason, promote=promote)
    _print_json(outcome)


@app.command()
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
    settings = _settings()
    result = run_simulation(cfg, settings, home=home, output=output)
    shown = ("verdict", "output", "home", "wall_s", "before_after", "rows")
    _print_json({k: v for k, v in result.items() if k in shown})


# ------------------------------------------------------------------------------------------- serving
@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default: the config's, 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default: the config's, 8000).")] = None,
    engine: Annotated[
        str | None, typer.Option(help="ray (Ray Serve, batched replicas) or uvicorn (this process).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Serving config YAML (configs/serve.yaml).")] = None,
    model: Annotated[
        str | None, typer.Option(help="models:/NAME@ALIAS, models:/NAME/N or a model folder.")
    ] = None,
    replicas: Annotated[int | None, typer.Option(help="Ray Serve replicas (default: the config's).")] = None,
    print_serve_config: Annotated[
        bool, typer.Option(help="Print the Ray Serve config (serve deploy / RayService) and exit.")
    ] = False,
) -> None:
    """Serve the prediction API; prints its URL. The prediction log database: TAGOPS_SERVE_DATABASE_URL."""
    from tagops.config import ServeConfig, load_config

    try:
        cfg = load_config(
            ServeConfig, config, host=host, port=port, engine=engine, model_uri=model, num_replicas=replicas
        )
    except ValueError as error:  # a pydantic ValidationError names every bad field
        raise typer.BadParameter(str(error)) from error
    if print_serve_config:
        import yaml

        from tagops.serving.ray.deployment import serve_deploy_config

        typer.echo(yaml.safe_dump(serve_deploy_config(cfg), sort_keys=False))
        return
    from tagops.serving.ray.server import run_ray
    from tagops.serving.server import run_uvicorn

    def ready(url: str, uri: str) -> None:
        typer.echo(f"serving {uri} with {cfg.engine} at {url} (docs: {url}/docs); Ctrl-C stops")

    settings = _settings()
    runner = run_ray if cfg.engine == "ray" else run_uvicorn
    runner(cfg, settings, on_ready=ready)


def _key_store(config: Path | None) -> Any:
    from tagops.config import ServeConfig, load_config
    from tagops.serving.keys import KeyStore

    return KeyStore.from_config(load_config(ServeConfig, config), _settings())


_KEYS_CONFIG = typer.Option(help="Serving config YAML whose database holds the keys.")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    admin: Annotated[bool, typer.Option(help="Also allow POST /v1/admin/reload.")] = False,
    config: Annotated[Path | None, _KEYS_CONFIG] = None,
) -> None:
    """Create an API key; prints it once (only a salted hash is stored)."""
    record, token = _key_store(config).create(name, "admin" if admin else "client")
    typer.echo(f"created key {record.key_id} ({record.role}) for {record.name!r}; store it now:", err=True)
    typer.echo(token)


@keys_app.command("list")
def keys_list(config: Annotated[Path | None, _KEYS_CONFIG] = None) -> None:
    """Every key with its role and whether it is revoked (never the key itself)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="API keys")
    for column in ("id", "name", "role", "created", "revoked"):
        table.add_column(column)
    for key in _key_store(config).list():
        table.add_row(
            key.key_id,
            key.name,
            key.role,
            f"{key.created_at:%Y-%m-%d %H:%M}",
            f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "",
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `tagops keys list`).")],
    config: Annotated[Path | None, _KEYS_CONFIG] = None,
) -> None:
    """Revoke a key (servers stop accepting it within key_cache_ttl_s)."""
    key = _key_store(config).revoke(key_id)
    typer.echo(f"revoked key {key.key_id} ({key.name!r})")


@app.command("log-replay")
def log_replay(
    config: Annotated[
        Path | None, typer.Option(help="Serving config YAML whose database gets the rows.")
    ] = None,
) -> None:
    """Write the prediction log rows left in this machine's journal to the database.

    A serving process does this itself when it starts and every 30 s; this command is for rows left
    when no server runs any more (the database was down when the last one stopped). Segments that a
    running server still holds are left to it. Replaying twice writes nothing twice.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from tagops.config import ServeConfig, load_config
    from tagops.predlog.engine import safe_url
    from tagops.predlog.log import PredictionLog

    log = PredictionLog.from_config(load_config(ServeConfig, config), _settings(), journal=True)
    writers = (log.writer, log.shadow_writer())
    try:
        log.create_tables()
        counts = {each.table.name: each.recover() for each in writers}
    except SQLAlchemyError as error:
        reason = error.args[0] if error.args else error
        raise TagopsError(f"{safe_url(log.url)}: {type(error).__name__}: {reason}") from None
    finally:
        log.dispose()
    files = [each.journal.files() for each in writers if each.journal is not None]
    left, bad = (sum(found[kind] for found in files) for kind in ("segment", "bad"))
    typer.echo(
        f"{counts['predictions']} prediction rows and {counts['shadow_predictions']} shadow rows written "
        f"to {safe_url(log.url)} from {log.options.journal_dir}"
    )
    if left:
        typer.echo(f"{left} segments held by running servers, left to them", err=True)
    if bad:
        typer.echo(f"{bad} segments set aside as unreadable (*.bad): inspect them by hand", err=True)


def main() -> None:
    """Console entry point: clean one-line errors for bad input, non-zero exit codes."""
    try:
        app()
    except DataError as error:
        for violation in error.violations:
            typer.echo(f"error: {violation}", err=True)
        sys.exit(1)
    except TagopsError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
