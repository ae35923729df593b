"""Training stages and the single-model entry point.

``tagops train --model linear`` pulls and validates the data, splits it, fits the model, evaluates it on
the validation split and the holdout, and logs and registers it in MLflow with the alias ``challenger``.
Each stage is a plain function the ZenML pipeline wraps as a step.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.config import EvalConfig, ReferenceConfig, TrainConfig
from tagops.data.stages import DataSnapshot, pull_stage, split_stage, validate_stage
from tagops.workloads.fit import fit_stage, ray_results_dir, refit_stage, uses_ray_train

if TYPE_CHECKING:
    import pandas as pd

    from tagops.models.transformer_ray import Tracking
    from tagops.registry.client import Registry
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

#: Reference statistics are recorded at registration unless a caller passes ``reference=None``.
DEFAULT_REFERENCE = ReferenceConfig()


@dataclass
class TrainResult:
    """What one training run produced."""

    family: str
    model_dir: Path
    val_report: dict[str, Any]
    holdout_report: dict[str, Any]
    run_id: str | None = None
    version: int | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def evaluate_stage(model_dir: Path, frame: pd.DataFrame, cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate a saved model on a labelled frame."""
    from tagops.evaluate import evaluate_predictor
    from tagops.inference.predictor import Predictor

    return evaluate_predictor(Predictor.from_directory(model_dir, threshold=cfg.threshold), frame, cfg)


def register_stage(
    registry: Registry,
    *,
    cfg: TrainConfig,
    model_dir: Path,
    data: DataSnapshot,
    val_report: dict[str, Any],
    holdout_report: dict[str, Any],
    report_dir: Path,
    run_id: str | None = None,
    reference: ReferenceConfig | None = DEFAULT_REFERENCE,
) -> tuple[str, int]:
    """Log config, provenance, metrics and plots to MLflow, then log and register the model as challenger.

    ``run_id`` continues a run opened before training (one that already holds per-epoch metrics);
    otherwise a new run is opened and any per-epoch history saved with the model is logged into it.
    ``reference`` decides how the reference statistics ``tagops monitor`` compares traffic with are
    recorded (``reference_stats.json`` in the run); ``None`` or ``enabled=False`` records none.
    """
    from tagops.evaluate import write_report
    from tagops.models.base import read_model_info
    from tagops.monitoring.baseline import log_reference
    from tagops.registry.provenance import git_commit, package_versions

    provenance = {
        "git_commit": git_commit(),
        "dataset_sha256": data.dataset_sha256,
        "holdout_sha256": data.holdout_sha256,
        "seed": cfg.seed,
    }
    family = cfg.model.family
    run_tags = {"family": family, **{k: str(v) for k, v in provenance.items()}}
    history = [] if run_id else read_model_info(model_dir).get("training", {}).get("history", [])
    with registry.start_run(f"train-{family}", tags=run_tags, run_id=run_id) as run_id:
        registry.log_params(
            {"config": cfg.model_dump(mode="json"), "packages": package_versions(), **provenance}
        )
        for epoch in history:
            registry.log_metrics(
                {k: v for k, v in epoch.items() if k != "epoch"}, prefix="epoch.", step=int(epoch["epoch"])
            )
        registry.log_metrics(_headline(val_report), prefix="val.")
        registry.log_metrics(_headline(holdout_report), prefix="holdout.")
        files = [
            *write_report(val_report, report_dir / "val.json"),
            *write_report(holdout_report, report_dir / "holdout.json"),
        ]
        registry.log_artifacts(files, artifact_path="evaluation")
        registry.log_dict(cfg.model_dump(mode="json"), "config.json")
        has_reference = False
        if reference is not None and reference.enabled:
            has_reference = log_reference(
                registry, model_dir, data, reference, holdout_f1=holdout_report["overall"]["f1"]
            )
        version = registry.log_model(
            model_dir,
            run_id=run_id,
            tags={
                "family": family,
                "dataset_sha256": data.dataset_sha256,
                "git_commit": run_tags["git_commit"],
                "holdout_f1": f"{holdout_report['overall']['f1']:.4f}",
                **({"reference_stats": "reference_stats.json"} if has_reference else {}),
            },
        )
        registry.set_tags({"registered_version": version})
    return run_id, version


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    """The scalar metrics worth charting: overall, per class, slices, calibration."""
    return {
        "overall": {k: v for k, v in report["overall"].items() if k != "f1_ci95"},
        "per_class": {k: {"f1": v["f1"]} for k, v in report["per_class"].items()},
        "slices": {k: {"f1": v["f1"]} for k, v in report["slices"].items() if v["f1"] is not None},
        "ece": report["calibration"]["ece"],
    }


RUN_RECORD = "tagops_run.json"


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
    data = data or pull_stage(settings, cfg.data)
    dataset, holdout = validate_stage(data)
    train, val = split_stage(dataset, cfg.data)
    family = cfg.model.family
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = run_name or f"{family}-{stamp}"
    runs_dir = settings.models_dir / "local"
    resumable = uses_ray_train(cfg.model)
    run_dir = ray_results_dir(settings) / name
    record_path = run_dir / RUN_RECORD
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

    def tracking(prefix: str) -> Tracking | None:
        if mlflow_run_id is None:
            return None
        from tagops.models.transformer_ray import Tracking

        return Tracking(settings.tracking_uri, mlflow_run_id, prefix)

    def done(output_dir: Path, stage: str) -> bool:
        if resumable and (output_dir / "model.json").is_file():
            logger.info("run %s: the %s model is already trained, reusing it", name, stage)
            return True
        return False

    model_dir = runs_dir / f"{name}-val"
    if not done(model_dir, "validation"):
        fit_stage(
            train,
            cfg.model,
            seed=cfg.seed,
            output_dir=model_dir,
            val=val,
            settings=settings,
            tracking=tracking("epoch."),
            checkpoint_dir=run_dir / "val",
        )
    val_report = evaluate_stage(model_dir, val, cfg.evaluation)
    if cfg.refit_full and not done(runs_dir / name, "refit"):
        model_dir = refit_stage(
            dataset,
            cfg.model,
            seed=cfg.seed,
            val_model_dir=model_dir,
            output_dir=runs_dir / name,
            settings=settings,
            tracking=tracking("refit_epoch."),
            checkpoint_dir=run_dir / "full",
        )
    elif cfg.refit_full:
        model_dir = runs_dir / name
    holdout_report = evaluate_stage(model_dir, holdout, cfg.evaluation)
    result = TrainResult(family, model_dir, val_report, holdout_report)
    if registry is not None:
        report_dir = settings.reports_dir / f"train-{name}"
        result.run_id, result.version = register_stage(
            registry,
            cfg=cfg,
            model_dir=model_dir,
            data=data,
            val_report=val_report,
            holdout_report=holdout_report,
            report_dir=report_dir,
            run_id=mlflow_run_id,
        )
    if resumable:
        finished = {"status": "finished", "model_dir": str(model_dir), "version": result.version}
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
    data = pull_stage(settings, cfg.data)
    if (data.dataset_sha256, data.holdout_sha256) != (record["dataset_sha256"], record["holdout_sha256"]):
        raise TagopsError(f"run {run_name!r}: the data changed since the run started; train afresh")
    return run_training(cfg, settings, registry=registry, data=data, run_name=run_name)
