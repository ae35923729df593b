"""Training: one ordered list of stages, for one model (``tagops train``) or many (the pipeline).

``tagops train --model linear`` pulls and validates the data, splits it, fits the model, evaluates it on
the validation split and the holdout, and logs and registers it in MLflow with the alias ``challenger``.
``tagops pipeline train`` runs the same stages for every configured family and gates each new version in
order. :func:`training_plan` is the one definition of both: :func:`~tagops.workloads.stages.run_stages`
runs it in this process and :mod:`tagops.pipelines.training` runs it as a ZenML pipeline.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.config import (
    AnyModelParams,
    EnsembleParams,
    EvalConfig,
    GateConfig,
    PipelineConfig,
    TrainConfig,
)
from tagops.data.augment import augment_stage
from tagops.data.stages import DataSnapshot, split_stage, validate_stage
from tagops.warehouse.training import data_stage
from tagops.workloads.calibrate import calibrate_stage, carry_calibration_stage
from tagops.workloads.fit import (
    assemble_stage,
    ray_results_dir,
    refit_model_stage,
    train_stage,
    uses_ray_train,
)
from tagops.workloads.register import register_model_stage
from tagops.workloads.stages import Stage, run_stages

if TYPE_CHECKING:
    import pandas as pd

    from tagops.metrics import EvalReport
    from tagops.models.transformer.ray_worker import Tracking
    from tagops.registry.client import Registry
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

RUN_RECORD = "tagops_run.json"


@dataclass
class TrainResult:
    """What one training run produced."""

    family: str
    model_dir: Path
    val_report: EvalReport
    holdout_report: EvalReport
    run_id: str | None = None
    version: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFolders:
    """Where a named single-model run keeps its models and checkpoints, and the MLflow run it streams to.

    A Ray-trained transformer run is resumable: a stage whose model is already saved is not trained
    again, and training continues from the last checkpoint under ``checkpoints``.
    """

    name: str
    models: Path
    checkpoints: Path
    resumable: bool
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None

    def tracking(self, prefix: str) -> Tracking | None:
        """Where per-epoch metrics stream (``None`` without an MLflow run opened before training)."""
        if self.mlflow_run_id is None or self.tracking_uri is None:
            return None
        from tagops.models.transformer.ray_worker import Tracking

        return Tracking(self.tracking_uri, self.mlflow_run_id, prefix)


def evaluate_stage(model_dir: Path, frame: pd.DataFrame, evaluation: EvalConfig) -> EvalReport:
    """Evaluate a saved model on a labelled frame."""
    from tagops.inference.predictor import Predictor
    from tagops.workloads.evaluate import evaluate_predictor

    predictor = Predictor.from_directory(Path(model_dir), threshold=evaluation.threshold)
    return evaluate_predictor(predictor, frame, evaluation)


def promote_stage(
    settings: Settings,
    versions: Sequence[int],
    holdout: pd.DataFrame,
    snapshot: DataSnapshot,
    evaluation: EvalConfig,
    gate: GateConfig,
) -> list[dict[str, Any]]:
    """Send each new version through the gate in order; the best that passes becomes champion."""
    from dataclasses import asdict

    from tagops.registry.client import Registry
    from tagops.workloads.promote import promote

    registry = Registry(settings)
    decisions = []
    for version in versions:
        decision = promote(
            registry,
            holdout=holdout,
            eval_cfg=evaluation,
            gate=gate,
            history=settings.promotion_history,
            version=version,
            holdout_sha256=snapshot.holdout_sha256,
        )
        decisions.append({"version": version, **asdict(decision)})
    return decisions


# -------------------------------------------------------------------------------------------- plan
def training_plan(
    cfg: PipelineConfig,
    *,
    promote: bool = True,
    register: bool = True,
    run: RunFolders | None = None,
    registry: Registry | None = None,
) -> list[Stage]:
    """The training workload as an ordered list of stages.

    Pull, validate, split, augment the training rows (``augmentation``); for each family train,
    calibrate and evaluate on validation, refit (keeping the calibration), evaluate on the holdout,
    register; then the gate over the new versions in order.

    An ensemble whose members this plan trains earlier with the same parameters is assembled from
    them, not retrained. ``run`` names the folders of a single-model run (``tagops train``);
    ``registry`` is the registry to register in (default: the settings').
    """
    stages = [
        Stage("pull_step", data_stage, params={"data": cfg.data}, outputs=("snapshot",)),
        Stage("validate_step", validate_stage, inputs={"data": "snapshot"}, outputs=("dataset", "holdout")),
        Stage(
            "split_step",
            split_stage,
            inputs={"dataset": "dataset"},
            params={"data": cfg.data},
            outputs=("train", "val"),
        ),
        Stage(
            "augment_step",
            augment_stage,
            inputs={"train": "train", "dataset": "dataset"},
            params={"augmentation": cfg.augmentation, "seed": cfg.seed},
            outputs=("train_rows", "dataset_rows"),
        ),
    ]
    trained: dict[str, AnyModelParams] = {}
    for params in cfg.models:
        family = params.family
        members = _trained_members(params, trained)
        run_params = _run_params(run, "val", f"{run.name}-val" if run else None, "epoch.")
        if members is not None:
            stages.append(
                Stage(
                    f"train_{family}",
                    assemble_stage,
                    inputs={"member_dirs": tuple(f"val_model_{m}" for m in members)},
                    params={"model": params},
                    outputs=(f"val_model_{family}",),
                )
            )
        else:
            stages.append(
                Stage(
                    f"train_{family}",
                    train_stage,
                    inputs={"train": "train_rows", "val": "val"},
                    params={"model": params, "seed": cfg.seed, **run_params},
                    outputs=(f"val_model_{family}",),
                )
            )
        stages.append(
            Stage(
                f"calibrate_{family}",
                calibrate_stage,
                inputs={"model_dir": f"val_model_{family}", "val": "val"},
                params={"calibration": cfg.calibration, "evaluation": cfg.evaluation},
                outputs=(f"calibration_{family}",),
            )
        )
        stages.append(_evaluate(f"evaluate_val_{family}", f"val_model_{family}", "val", cfg, f"val_{family}"))
        final = f"val_model_{family}"
        if cfg.refit_full:  # validation has measured the recipe; the registered model learns from all rows
            final = f"model_{family}"
            if members is not None:
                stages.append(
                    Stage(
                        f"refit_{family}",
                        assemble_stage,
                        inputs={"member_dirs": tuple(f"model_{m}" for m in members)},
                        params={"model": params},
                        outputs=(f"refit_{family}",),
                    )
                )
            else:
                stages.append(
                    Stage(
                        f"refit_{family}",
                        refit_model_stage,
                        inputs={"dataset": "dataset_rows", "val_model_dir": f"val_model_{family}"},
                        params={
                            "model": params,
                            "seed": cfg.seed,
                            **_run_params(run, "full", run.name if run else None, "refit_epoch."),
                        },
                        outputs=(f"refit_{family}",),
                    )
                )
            stages.append(
                Stage(
                    f"carry_calibration_{family}",
                    carry_calibration_stage,
                    inputs={"model_dir": f"refit_{family}", "val_model_dir": f"val_model_{family}"},
                    outputs=(final,),
                )
            )
        trained[family] = params
        stages.append(_evaluate(f"evaluate_holdout_{family}", final, "holdout", cfg, f"holdout_{family}"))
        if register:
            extra: dict[str, Any] = {}
            if run is not None:
                extra = {"run_id": run.mlflow_run_id, "report_name": f"train-{run.name}"}
            if registry is not None:
                extra["registry"] = registry
            stages.append(
                Stage(
                    f"register_{family}",
                    register_model_stage,
                    inputs={
                        "model_dir": final,
                        "snapshot": "snapshot",
                        "val_report": f"val_{family}",
                        "holdout_report": f"holdout_{family}",
                    },
                    params={"train_config": cfg.train_config(params), **extra},
                    outputs=(f"version_{family}", f"run_{family}"),
                )
            )
    if register and promote:
        stages.append(
            Stage(
                "promote_step",
                promote_stage,
                inputs={
                    "versions": tuple(f"version_{p.family}" for p in cfg.models),
                    "holdout": "holdout",
                    "snapshot": "snapshot",
                },
                params={"evaluation": cfg.evaluation, "gate": cfg.gate},
                outputs=("decisions",),
            )
        )
    return stages


def _evaluate(name: str, model: str, frame: str, cfg: PipelineConfig, output: str) -> Stage:
    return Stage(
        name,
        evaluate_stage,
        inputs={"model_dir": model, "frame": frame},
        params={"evaluation": cfg.evaluation},
        outputs=(output,),
    )


def _run_params(run: RunFolders | None, checkpoints: str, folder: str | None, prefix: str) -> dict[str, Any]:
    """A named run's folders for one fitting stage (nothing for the pipeline's fresh folders)."""
    if run is None or folder is None:
        return {}
    return {
        "output_dir": run.models / folder,
        "checkpoint_dir": run.checkpoints / checkpoints,
        "tracking": run.tracking(prefix),
        "reuse": run.resumable,
    }


def _trained_members(params: AnyModelParams, trained: dict[str, AnyModelParams]) -> list[str] | None:
    """The families of an ensemble's members that the plan trains earlier with the same parameters.

    ``None`` when ``params`` is not an ensemble or a member was not trained earlier (it is then trained
    as a model of its own).
    """
    if not isinstance(params, EnsembleParams):
        return None
    if any(trained.get(member.family) != member for member in params.members):
        return None
    return [member.family for member in params.members]


# ------------------------------------------------------------------------------------- entry point
def run_training(
    cfg: TrainConfig,
    settings: Settings,
    *,
    registry: Registry | None = None,
    data: DataSnapshot | None = None,
    run_name: str | None = None,
) -> TrainResult:
    """Train one model end to end; registers it when a registry is given.

    A Ray-trained transformer run is resumable: its record (config, data hashes, MLflow run) is written to
    ``TAGOPS_HOME/ray_results/<run_name>/`` first, the MLflow run is opened before training so that
    per-epoch metrics stream into it, and :func:`resume_training` continues it after an interruption.
    """
    from tagops.models.transformer.network import check_encoders

    check_encoders([cfg.model])
    data = data or data_stage(settings, cfg.data)
    family = cfg.model.family
    name = run_name or f"{family}-{time.strftime('%Y%m%d-%H%M%S')}"
    resumable = uses_ray_train(cfg.model)
    record_path = ray_results_dir(settings) / name / RUN_RECORD
    record: dict[str, Any] = {}
    if resumable and record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
    mlflow_run_id: str | None = record.get("mlflow_run_id")
    if resumable and registry is not None and mlflow_run_id is None:
        mlflow_run_id = registry.create_run(f"train-{family}", tags={"family": family, "tagops.run": name})
    if resumable:
        record.update(
            name=name,
            config=cfg.model_dump(mode="json"),
            dataset_sha256=data.dataset_sha256,
            holdout_sha256=data.holdout_sha256,
            mlflow_run_id=mlflow_run_id,
            status="running",
        )
        _write_record(record_path, record)
        logger.info("run %s (if interrupted: tagops train --resume %s)", name, name)
    run = RunFolders(
        name=name,
        models=settings.models_dir / "local",
        checkpoints=record_path.parent,
        resumable=resumable,
        tracking_uri=settings.tracking_uri,
        mlflow_run_id=mlflow_run_id,
    )
    plan = training_plan(
        PipelineConfig(
            data=cfg.data,
            models=(cfg.model,),
            evaluation=cfg.evaluation,
            calibration=cfg.calibration,
            augmentation=cfg.augmentation,
            seed=cfg.seed,
            refit_full=cfg.refit_full,
        ),
        promote=False,
        register=registry is not None,
        run=run,
        registry=registry,
    )
    results = run_stages(plan[1:], settings, results={"snapshot": data})  # the data is already pulled
    final = f"model_{family}" if cfg.refit_full else f"val_model_{family}"
    result = TrainResult(family, results[final], results[f"val_{family}"], results[f"holdout_{family}"])
    if registry is not None:
        result.version, result.run_id = results[f"version_{family}"], results[f"run_{family}"]
    if resumable:
        finished = {"status": "finished", "model_dir": str(result.model_dir), "version": result.version}
        _write_record(record_path, {**record, **finished})
    return result


def _write_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str), encoding="utf-8")


def resume_training(run_name: str, settings: Settings, *, registry: Registry | None = None) -> TrainResult:
    """Continue an interrupted run (``tagops train --resume RUN``) from its last checkpoint.

    The run's own config is used; the data must still hash to what the run started with.
    """
    from tagops.errors import TagopsError

    record_path = ray_results_dir(settings) / run_name / RUN_RECORD
    if not record_path.is_file():
        known = sorted(p.parent.name for p in ray_results_dir(settings).glob(f"*/{RUN_RECORD}"))
        raise TagopsError(f"no resumable run {run_name!r} under {ray_results_dir(settings)}; runs: {known}")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if record.get("status") == "finished":
        raise TagopsError(f"run {run_name!r} already finished (model {record.get('model_dir')})")
    cfg = TrainConfig.model_validate(record["config"])
    data = data_stage(settings, cfg.data)
    if (data.dataset_sha256, data.holdout_sha256) != (record["dataset_sha256"], record["holdout_sha256"]):
        raise TagopsError(f"run {run_name!r}: the data changed since the run started; train afresh")
    return run_training(cfg, settings, registry=registry, data=data, run_name=run_name)


def run_training_plan(cfg: PipelineConfig, settings: Settings) -> dict[str, Any]:
    """Run the pipeline's stages in this process (``tagops pipeline train --no-pipeline``).

    Returns the summary :func:`tagops.pipelines.training.run_training_pipeline` returns, without the
    ZenML run's name and cache flags.
    """
    results = run_stages(training_plan(cfg), settings)
    models = [
        {
            "family": params.family,
            "version": results[f"version_{params.family}"],
            "holdout_f1": results[f"holdout_{params.family}"]["overall"]["f1"],
            "holdout_macro_f1": results[f"holdout_{params.family}"]["overall"]["macro_f1"],
            "f1_ci95": results[f"holdout_{params.family}"]["overall"]["f1_ci95"],
            "cached": False,
        }
        for params in cfg.models
    ]
    return {
        "run_name": None,
        "status": "completed",
        "snapshot_id": results["snapshot"].snapshot_id,
        "models": models,
        "decisions": results["decisions"],
    }
