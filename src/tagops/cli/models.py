"""Model commands: train, tune, evaluate, promote, rollback and `tagops models list|history|pull`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tagops.cli.context import load_settings, read_config
from tagops.cli.exit_codes import ExitCode
from tagops.cli.output import (
    JsonFlag,
    command_group,
    output_file,
    output_folder,
    print_json,
    stdout_to_stderr,
)
from tagops.cli.params import ThresholdOption, number
from tagops.errors import TagopsError
from tagops.model_ref import DEFAULT_MODEL_URI

if TYPE_CHECKING:
    from tagops.metrics import RobustnessReport

models_app = command_group("Inspect the model registry.")


def _registry(settings: Any) -> Any:
    """The model registry (opening it creates a local MLflow store on first use: seconds)."""
    from tagops.registry.client import Registry

    return Registry(settings)


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
        float | None,
        typer.Option(
            parser=number(0.0),
            metavar="<float>",
            help="Transformer: GPUs per worker (default: 1 if the cluster has one).",
        ),
    ] = None,
    resume: Annotated[
        str | None, typer.Option(help="Continue an interrupted run by name, from its last checkpoint.")
    ] = None,
) -> None:
    """Train one model, evaluate it on validation and holdout, register it as `challenger`.

    Prints the result as JSON; at a terminal, bars on stderr follow the stages and a transformer's epochs.
    """
    from tagops.cli.progress import CommandProgress, wanted
    from tagops.config import TrainConfig

    settings = load_settings(announce_log=True)
    if resume is not None:
        from tagops.workloads.train import resume_training

        registry = _registry(settings) if register else None
        with (
            CommandProgress(enabled=wanted()) as progress,
            progress.steps(),
            progress.epochs(),
            stdout_to_stderr(),  # Ray Train and MLflow may print; stdout carries only our JSON
        ):
            result = resume_training(resume, settings, registry=registry)
    else:
        from tagops.workloads.train import run_training

        overrides: dict[str, Any] = {"seed": seed}
        cfg = read_config(TrainConfig, config, **overrides)
        if model is not None and cfg.model.family != model:
            cfg = read_config(TrainConfig, config, **overrides, model={"family": model})
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
        from tagops.models.transformer.network import check_encoders

        check_encoders([cfg.model])
        registry = _registry(settings) if register else None  # after the checks: refused before any setup
        with (
            CommandProgress(enabled=wanted()) as progress,
            progress.steps(),
            progress.epochs(),
            stdout_to_stderr(),  # Ray Train and MLflow may print; stdout carries only our JSON
        ):
            result = run_training(cfg, settings, registry=registry)
    print_json(
        {
            "family": result.family,
            "model_dir": result.model_dir,
            "run_id": result.run_id,
            "version": result.version,
            "val_f1": result.val_report["overall"]["f1"],
            "holdout_f1": result.holdout_report["overall"]["f1"],
        }
    )


def evaluate(
    output: Annotated[
        Path, typer.Option(help="JSON report to write (plots go next to it).", callback=output_file)
    ],
    model: Annotated[
        str, typer.Option(help="models:/NAME@ALIAS, models:/NAME/N or a model folder.")
    ] = DEFAULT_MODEL_URI,
    data: Annotated[Path | None, typer.Option(help="Labelled CSV (default: the pulled holdout.csv).")] = None,
    threshold: ThresholdOption = None,
    log_to_mlflow: Annotated[bool, typer.Option(help="Also log the report as an MLflow run.")] = True,
    robustness: Annotated[
        bool | None,
        typer.Option(
            "--robustness/--no-robustness",
            help="Also score transformed copies of the data and the challenge set "
            "(default: on for the pulled holdout, off for --data).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate a model: overall, per-class, slices, calibration, confusion matrix, bootstrap CI.

    The whole report goes to `--output`; the command prints its headline numbers (`--json`: those and
    the files written, as JSON).
    """
    from tagops.config import DataConfig, EvalConfig
    from tagops.data.stages import pull_stage
    from tagops.data.validate import load_projects
    from tagops.inference.loading import load_predictor
    from tagops.reports import write_report
    from tagops.workloads.evaluate import evaluate_predictor, evaluate_robustness

    settings = load_settings()
    path = data or pull_stage(settings, DataConfig()).holdout_path
    cfg = EvalConfig(threshold=threshold)
    predictor = load_predictor(model, settings, threshold=threshold)
    frame = load_projects(path)
    report = evaluate_predictor(predictor, frame, cfg)
    report["data"] = str(path)
    with_robustness = data is None if robustness is None else robustness
    if with_robustness:
        report["robustness"] = evaluate_robustness(predictor, frame, cfg)
    files = write_report(report, output)
    if log_to_mlflow:
        from tagops.registry.client import Registry

        registry = Registry(settings)
        with (
            stdout_to_stderr(),
            registry.start_run(f"evaluate-{path.stem}", tags={"model_uri": model, "data": str(path)}),
        ):
            registry.log_metrics(
                {k: v for k, v in report["overall"].items() if k != "f1_ci95"}, prefix="eval."
            )
            if "robustness" in report:
                slices = report["robustness"]["slices"].items()
                registry.log_metrics({f"{name}.f1": s["f1"] for name, s in slices}, prefix="robust.")
            registry.log_artifacts(files, artifact_path="evaluation")
    overall = report["overall"]
    raw = report.get("raw")
    if as_json:
        print_json(
            {
                "report": str(output),
                "files": [str(file) for file in files],
                "model": model,
                "data": str(path),
                "threshold": predictor.threshold,
                "threshold_source": predictor.threshold_source,
                "overall": overall,
                "ece": report["calibration"]["ece"],
                "raw": {"f1": raw["f1"], "ece": raw["calibration"]["ece"]} if raw else None,
                "robustness": report.get("robustness"),
            }
        )
        return
    typer.echo(
        f"{output}: as served (threshold {predictor.threshold}, {predictor.threshold_source}) f1 "
        f"{overall['f1']:.4f} (95% CI {overall['f1_ci95']}), macro f1 {overall['macro_f1']:.4f}, "
        f"abstained {overall.get('abstained', 0)}, ECE {report['calibration']['ece']:.3f}; "
        + (f"raw f1 {raw['f1']:.4f}, ECE {raw['calibration']['ece']:.3f}; " if raw else "")
        + f"n={overall['num_samples']}"
    )
    if "robustness" in report:
        print_robustness(report["robustness"])


def print_robustness(robustness: RobustnessReport) -> None:
    """The robustness slices as a table: weighted and macro F1, rows; the worst slice marked."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Robustness (weighted F1 by slice)")
    table.add_column("slice")
    for column in ("weighted F1", "macro F1", "n"):
        table.add_column(column, justify="right")
    for name, scores in robustness["slices"].items():
        worst = name == robustness["worst_slice"]
        table.add_row(
            f"{name} (worst)" if worst else name,
            "–" if scores["f1"] is None else f"{scores['f1']:.4f}",
            "–" if scores["macro_f1"] is None else f"{scores['macro_f1']:.4f}",
            str(scores["num_samples"]),
            style="bold" if worst else None,
        )
    Console(width=max(80, Console().width)).print(table)


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

    from tagops.cli.progress import CommandProgress, wanted
    from tagops.config import TuneConfig
    from tagops.workloads.tune import TUNE_RECORD, run_tuning, tune_dir

    if model not in ("transformer", "linear"):
        raise typer.BadParameter("tune supports transformer or linear", param_hint="--model")
    settings = load_settings(announce_log=True)
    if resume is not None:
        record_path = tune_dir(settings) / resume / TUNE_RECORD
        if not record_path.is_file():
            raise TagopsError(f"no tuning run {resume!r} under {tune_dir(settings)}")
        record = json.loads(record_path.read_text(encoding="utf-8"))
        cfg, model = TuneConfig.model_validate(record["config"]), record["family"]
    else:
        cfg = read_config(TuneConfig, config, trials=trials, seed=seed)
    if model == "transformer":
        from tagops.models.transformer.network import check_encoders

        check_encoders([cfg.transformer])  # before the registry and the data: one line, no setup
    registry = _registry(settings) if register else None
    started = time.perf_counter()
    family: Any = model
    # At a terminal, bars follow the trials and the best trial's training; Ray Tune prints its own
    # tables, which go to stderr: stdout carries only our JSON.
    with CommandProgress(enabled=wanted()) as progress, progress.epochs(), stdout_to_stderr():
        result = run_tuning(
            cfg,
            settings,
            family=family,
            registry=registry,
            name=resume,
            resume=resume is not None,
            on_trial=progress.counter("trials"),
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
    print_json(
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
def promote_cmd(
    version: Annotated[int | None, typer.Option(help="Version to gate (default: the challenger).")] = None,
    config: Annotated[Path | None, typer.Option(help="Pipeline config YAML (gate and evaluation).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Gate the challenger against the champion on the holdout; promote only if it passes."""
    from tagops.config import PipelineConfig
    from tagops.data.stages import pull_stage, validate_stage
    from tagops.registry.client import Registry
    from tagops.workloads.promote import promote

    settings = load_settings()
    cfg = read_config(PipelineConfig, config)
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
    if as_json:
        from dataclasses import asdict

        print_json(asdict(decision))
        return
    verdict = "promoted" if decision.promote else "not promoted"
    typer.echo(f"{verdict}: {decision.reason}")


def gate_cmd(
    challenger: Annotated[
        str, typer.Option(help="models:/NAME@ALIAS, models:/NAME/N or a model folder: the candidate.")
    ],
    champion: Annotated[
        str, typer.Option(help="The model to beat: a models:/ URI or a folder (`tagops models pull`).")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            help="Folder for gate.json, gate.md and both reports (default: reports).", callback=output_folder
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Pipeline config YAML (gate and evaluation).")] = None,
) -> None:
    """Gate one model against another on the holdout without promoting anything (a pull request's check).

    Prints the verdict as JSON and writes it as Markdown tables (gate.md, for a comment). Exit status 0
    when the challenger passes, 4 (refused) when the gate refuses it.
    """
    from tagops.config import PipelineConfig
    from tagops.data.stages import pull_stage, validate_stage
    from tagops.workloads.gate import compare_models, write_gate_outputs

    settings = load_settings()
    cfg = read_config(PipelineConfig, config)
    _, holdout = validate_stage(pull_stage(settings, cfg.data))
    comparison = compare_models(
        challenger, champion, settings, holdout=holdout, eval_cfg=cfg.evaluation, gate=cfg.gate
    )
    target = output or settings.reports_dir / "gate"
    paths = write_gate_outputs(comparison, target)
    print_json({**comparison.to_json(), "outputs": {name: str(path) for name, path in paths.items()}})
    if not comparison.decision.promote:
        raise typer.Exit(ExitCode.REFUSED)


def rollback(as_json: JsonFlag = False) -> None:
    """Restore the champion that preceded the current one."""
    from tagops.registry.client import Registry
    from tagops.workloads.promote import rollback as do_rollback

    settings = load_settings()
    before, after = do_rollback(Registry(settings), history=settings.promotion_history)
    if as_json:
        print_json({"previous_champion": before, "champion": after})
        return
    typer.echo(f"champion: version {before} -> version {after}")


@models_app.command("list")
def models_list(as_json: JsonFlag = False) -> None:
    """Registered versions with their aliases and holdout F1 (--json: with every tag), newest first."""
    from tagops.registry.client import Registry

    settings = load_settings()
    versions = Registry(settings).list_versions()
    if as_json:
        print_json(versions)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models:/{settings.registered_model}")
    for column in ("version", "family", "aliases", "holdout F1", "gate", "run"):
        table.add_column(column)
    for v in versions:
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

    for record in read_history(load_settings().promotion_history):
        typer.echo(json.dumps(record, sort_keys=True))


@models_app.command("pull")
def models_pull(
    output: Annotated[Path, typer.Option(help="Folder to write the model to (new, or an empty folder).")],
    uri: Annotated[
        str, typer.Argument(help="models:/NAME@ALIAS or models:/NAME/N (default: the champion).")
    ] = DEFAULT_MODEL_URI,
) -> None:
    """Copy a registered model into a folder that `tagops serve --model DIR` serves; prints its version.

    The model comes through this host's model cache, verified against the sha256 it was registered with,
    exactly as serving loads it. A folder serves without the registry, so an image can carry its model
    (the Dockerfile's MODEL_URI build argument runs this command).
    """
    import shutil

    from tagops.model_ref import ModelRef
    from tagops.outputs import check_new_folder, staged_path
    from tagops.registry.client import MODEL_SHA_TAG, Registry

    ref = ModelRef.parse(uri)
    if not ref.in_registry:
        raise typer.BadParameter(f"{uri}: a folder is already a model; name a models:/ URI", param_hint="URI")
    check_new_folder(output)
    registry = Registry(load_settings())
    version, info = registry.resolve(ref)
    cached = registry.download(version)
    # Copied beside the target and renamed into place: an interrupted pull leaves no half model behind.
    output.parent.mkdir(parents=True, exist_ok=True)
    staged = staged_path(output)
    try:
        shutil.copytree(cached, staged)
        if output.exists():
            output.rmdir()
        staged.rename(output)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    print_json(
        {
            "uri": uri,
            "model": str(ModelRef.registered(info["name"], version)),
            "version": version,
            "run_id": info["run_id"],
            MODEL_SHA_TAG: info["tags"].get(MODEL_SHA_TAG),
            "output": str(output.resolve()),
        }
    )
