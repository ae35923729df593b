"""Registering a trained model: its MLflow run (config, provenance, metrics, plots) and its version.

:func:`register_model_stage` is the registration stage of :func:`tagops.workloads.train.training_plan`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.config import ReferenceConfig, TrainConfig

if TYPE_CHECKING:
    from tagops.data.stages import DataSnapshot
    from tagops.metrics import EvalReport
    from tagops.registry.client import Registry
    from tagops.settings import Settings

#: Reference statistics are recorded at registration unless a caller passes ``reference=None``.
DEFAULT_REFERENCE = ReferenceConfig()


def register_model_stage(
    settings: Settings,
    model_dir: Path,
    snapshot: DataSnapshot,
    val_report: EvalReport,
    holdout_report: EvalReport,
    train_config: TrainConfig,
    registry: Registry | None = None,
    run_id: str | None = None,
    report_name: str | None = None,
) -> tuple[int, str]:
    """Log the run to MLflow and register the model as ``challenger``; returns its version and run id."""
    from tagops.registry.client import Registry

    model_dir = Path(model_dir)
    name = report_name or f"pipeline-{train_config.model.family}-{model_dir.name}"
    run_id, version = register_stage(
        registry or Registry(settings),
        cfg=train_config,
        model_dir=model_dir,
        data=snapshot,
        val_report=val_report,
        holdout_report=holdout_report,
        report_dir=settings.reports_dir / name,
        run_id=run_id,
    )
    return version, run_id


def register_stage(
    registry: Registry,
    *,
    cfg: TrainConfig,
    model_dir: Path,
    data: DataSnapshot,
    val_report: EvalReport,
    holdout_report: EvalReport,
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
    from tagops.models.base import read_model_info
    from tagops.monitoring.baseline import log_reference
    from tagops.registry.provenance import git_commit, package_versions
    from tagops.reports import write_report

    provenance = {
        "git_commit": git_commit(),
        "dataset_sha256": data.dataset_sha256,
        "holdout_sha256": data.holdout_sha256,
        "seed": cfg.seed,
        # The warehouse snapshot the files came from (`tagops pipeline train --snapshot ID` trains on it).
        **({"snapshot_id": data.snapshot_id} if data.snapshot_id else {}),
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
        lineage = data.dataset_path.parent / "lineage.json"
        if data.snapshot_id is not None and lineage.is_file():
            # What the warehouse snapshot was built from (sources' and SQL's sha256, row counts, feedback).
            registry.log_artifacts([lineage], artifact_path="data")
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
                **({"snapshot_id": data.snapshot_id} if data.snapshot_id else {}),
                "git_commit": run_tags["git_commit"],
                "holdout_f1": f"{holdout_report['overall']['f1']:.4f}",
                **_calibration_tags(model_dir),
                **({"reference_stats": "reference_stats.json"} if has_reference else {}),
            },
        )
        registry.set_tags({"registered_version": version})
    return run_id, version


def _calibration_tags(model_dir: Path) -> dict[str, str]:
    """How the model answers as served (temperature, abstention threshold), as registry tags."""
    from tagops.models.calibration import read_calibration

    calibration = read_calibration(model_dir)
    return {"calibration.threshold": "none"} if calibration is None else calibration.tags()


def _headline(report: EvalReport) -> dict[str, Any]:
    """The scalar metrics worth charting: overall and per class as served, slices, calibration, raw."""
    headline: dict[str, Any] = {
        "overall": {k: v for k, v in report["overall"].items() if k != "f1_ci95"},
        "per_class": {k: {"f1": v["f1"]} for k, v in report["per_class"].items()},
        "slices": {k: {"f1": v["f1"]} for k, v in report["slices"].items() if v["f1"] is not None},
        "ece": report["calibration"]["ece"],
    }
    if "raw" in report:
        raw = report["raw"]
        headline["raw"] = {"f1": raw["f1"], "macro_f1": raw["macro_f1"], "ece": raw["calibration"]["ece"]}
    return headline
