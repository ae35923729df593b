"""`tagops pipeline`: the ZenML pipelines."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tagops.cli.context import load_settings, read_config
from tagops.cli.output import JsonFlag, command_group, print_json, stdout_to_stderr

if TYPE_CHECKING:
    from tagops.config import PipelineConfig

pipeline_app = command_group("Run ZenML pipelines.")


def _with_snapshot(cfg: PipelineConfig, snapshot: str) -> PipelineConfig:
    """``cfg`` training from ``snapshot`` (validated: a malformed reference is a usage error)."""
    from pydantic import ValidationError

    from tagops.config import DataConfig

    try:
        data = DataConfig.model_validate({**cfg.data.model_dump(), "snapshot": snapshot})
    except ValidationError as error:
        raise typer.BadParameter(
            f"{snapshot!r} is not a snapshot reference", param_hint="--snapshot"
        ) from error
    return cfg.model_copy(update={"data": data})


@pipeline_app.command("train")
def pipeline_train(
    config: Annotated[Path | None, typer.Option(help="Pipeline config YAML.")] = None,
    cache: Annotated[bool, typer.Option(help="Reuse unchanged steps.")] = True,
    pipeline: Annotated[
        bool, typer.Option(help="Run on ZenML (--no-pipeline: the same stages in this process).")
    ] = True,
    snapshot: Annotated[
        str | None,
        typer.Option(
            help="Train from this warehouse snapshot (an id, a unique prefix, 'latest'; 'build': build "
            "one first) instead of the config's data.snapshot."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Pull → build → validate → split → train each family → evaluate → register → gate, on ZenML.

    With a snapshot (the config's ``data.snapshot`` or --snapshot) the models train on the warehouse
    snapshot's training set and holdout; its id is recorded in MLflow and in the ZenML run, and training
    again from the same snapshot and seed gives the same linear model.
    """
    from rich.console import Console
    from rich.table import Table

    from tagops.config import PipelineConfig
    from tagops.data.stages import validate_stage
    from tagops.warehouse.training import data_stage

    settings = load_settings(announce_log=True)
    cfg = read_config(PipelineConfig, config)
    if snapshot is not None:
        cfg = _with_snapshot(cfg, snapshot)
    # Pre-flight outside ZenML (cheap): an encoder that cannot load, then bad data, fail here with a
    # one-line message, before any step runs or anything is registered. A snapshot to build is built
    # here, once; the pipeline is then given its id, so the run's parameters name the data it trained on.
    from tagops.models.transformer.network import check_encoders

    check_encoders(cfg.models)
    data = data_stage(settings, cfg.data)
    validate_stage(data)
    if data.snapshot_id is not None:
        cfg = _with_snapshot(cfg, data.snapshot_id)
        message = f"data: warehouse snapshot {data.snapshot_id} (again with --snapshot {data.snapshot_id})"
        typer.echo(message, err=as_json)
    started = time.perf_counter()
    from tagops.cli.progress import CommandProgress, wanted

    with (
        CommandProgress(enabled=wanted(json_output=as_json)) as progress,
        progress.steps(),
        progress.epochs(),
        stdout_to_stderr(),
    ):
        if pipeline:
            from tagops.pipelines.training import run_training_pipeline

            summary = run_training_pipeline(cfg, enable_cache=cache)
        else:
            from tagops.workloads.train import run_training_plan

            summary = run_training_plan(cfg, settings)
    from tagops.registry.client import CHAMPION, Registry

    champion = Registry(settings).alias_version(CHAMPION)
    if as_json:
        print_json({**summary, "champion": champion, "seconds": round(time.perf_counter() - started, 1)})
        return
    title = summary["run_name"] or "training (in process)"
    table = Table(title=f"{title} ({time.perf_counter() - started:.0f}s)")
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
