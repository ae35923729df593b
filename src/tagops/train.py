"""Training stages and the single-model entry point.

``tagops train --model linear`` pulls and validates the data, splits it, fits the model, evaluates it on
the validation split and the holdout, and logs and registers it in MLflow with the alias ``challenger``.
Each stage is a plain function the ZenML pipeline wraps as a step.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.config import DataConfig, EvalConfig, LinearParams, RulesParams, TrainConfig

if TYPE_CHECKING:
    import pandas as pd

    from tagops.registry import Registry
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

TRACKED_PACKAGES = (
    "tagops",
    "scikit-learn",
    "numpy",
    "pandas",
    "torch",
    "transformers",
    "ray",
    "mlflow",
    "zenml",
    "pandera",
    "safetensors",
)


@dataclass(frozen=True)
class DataSnapshot:
    """The verified data files a run used, by content hash."""

    dataset_path: Path
    holdout_path: Path
    dataset_sha256: str
    holdout_sha256: str


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


def pull_stage(settings: Settings, data: DataConfig) -> DataSnapshot:
    """Make sure the verified data files are present (pulling them if needed) and hash them."""
    from tagops.data.ingest import load_manifest, pull_data

    if data.source_dir is not None:
        return snapshot(data.source_dir / data.dataset_file, data.source_dir / data.holdout_file)
    manifest = load_manifest()
    names = (data.dataset_file, data.holdout_file)
    known = [n for n in names if n in manifest]
    paths = {n: settings.data_dir / n for n in names}
    if known:
        paths.update(
            pull_data(
                settings.data_dir,
                mirror=settings.data_mirror,
                base_url=settings.data_url,
                files=tuple(known),
                manifest=manifest,
            )
        )
    return snapshot(paths[data.dataset_file], paths[data.holdout_file])


def snapshot(dataset_path: Path, holdout_path: Path) -> DataSnapshot:
    """Hash two data files (files not in the manifest, e.g. fixtures, are hashed too)."""
    from tagops.data.ingest import sha256_file

    return DataSnapshot(dataset_path, holdout_path, sha256_file(dataset_path), sha256_file(holdout_path))


def validate_stage(data: DataSnapshot) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate both files against the contract and refuse any leakage between them."""
    from tagops.data.validate import check_no_leakage, load_projects

    dataset = load_projects(data.dataset_path)
    holdout = load_projects(data.holdout_path)
    check_no_leakage(dataset, holdout, file=str(data.dataset_path), other_file=str(data.holdout_path))
    return dataset, holdout


def split_stage(dataset: pd.DataFrame, data: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded, stratified train/validation split."""
    from tagops.data.split import stratify_split

    return stratify_split(dataset, val_size=data.val_size, seed=data.seed)


def fit_stage(
    train: pd.DataFrame, params: RulesParams | LinearParams, *, seed: int, output_dir: Path
) -> Path:
    """Fit one model family and save it to ``output_dir``; returns the folder."""
    from tagops.data.clean import build_text
    from tagops.models import create_model

    model: Any = create_model(params)
    texts = [build_text(t, d) for t, d in zip(train["title"], train["description"], strict=True)]
    started = time.perf_counter()
    model.fit(texts, train["tag"].tolist(), seed=seed)
    logger.info("fitted %s on %d rows in %.1fs", params.family, len(texts), time.perf_counter() - started)
    model.save(output_dir)
    return output_dir


def evaluate_stage(model_dir: Path, frame: pd.DataFrame, cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate a saved model on a labelled frame."""
    from tagops.evaluate import evaluate_predictor
    from tagops.predict import Predictor

    return evaluate_predictor(Predictor.from_directory(model_dir, threshold=cfg.threshold), frame, cfg)


def git_commit() -> str:
    """The current git commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a run's result."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def register_stage(
    registry: Registry,
    *,
    cfg: TrainConfig,
    model_dir: Path,
    data: DataSnapshot,
    val_report: dict[str, Any],
    holdout_report: dict[str, Any],
    report_dir: Path,
) -> tuple[str, int]:
    """Log config, provenance, metrics and plots to MLflow, then log and register the model as challenger."""
    from tagops.evaluate import write_report

    provenance = {
        "git_commit": git_commit(),
        "dataset_sha256": data.dataset_sha256,
        "holdout_sha256": data.holdout_sha256,
        "seed": cfg.seed,
    }
    family = cfg.model.family
    run_tags = {"family": family, **{k: str(v) for k, v in provenance.items()}}
    with registry.start_run(f"train-{family}", tags=run_tags) as run_id:
        registry.log_params(
            {"config": cfg.model_dump(mode="json"), "packages": package_versions(), **provenance}
        )
        registry.log_metrics(_headline(val_report), prefix="val.")
        registry.log_metrics(_headline(holdout_report), prefix="holdout.")
        files = [
            *write_report(val_report, report_dir / "val.json"),
            *write_report(holdout_report, report_dir / "holdout.json"),
        ]
        registry.log_artifacts(files, artifact_path="evaluation")
        registry.log_dict(cfg.model_dump(mode="json"), "config.json")
        version = registry.log_model(
            model_dir,
            run_id=run_id,
            tags={
                "family": family,
                "dataset_sha256": data.dataset_sha256,
                "git_commit": run_tags["git_commit"],
                "holdout_f1": f"{holdout_report['overall']['f1']:.4f}",
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


def run_training(
    cfg: TrainConfig,
    settings: Settings,
    *,
    registry: Registry | None = None,
    data: DataSnapshot | None = None,
) -> TrainResult:
    """Train one model end to end; registers it when a registry is given."""
    data = data or pull_stage(settings, cfg.data)
    dataset, holdout = validate_stage(data)
    train, val = split_stage(dataset, cfg.data)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs_dir = settings.models_dir / "local"
    model_dir = fit_stage(
        train, cfg.model, seed=cfg.seed, output_dir=runs_dir / f"{cfg.model.family}-{stamp}-val"
    )
    val_report = evaluate_stage(model_dir, val, cfg.evaluation)
    if cfg.refit_full:
        model_dir = fit_stage(
            dataset, cfg.model, seed=cfg.seed, output_dir=runs_dir / f"{cfg.model.family}-{stamp}"
        )
    holdout_report = evaluate_stage(model_dir, holdout, cfg.evaluation)
    result = TrainResult(cfg.model.family, model_dir, val_report, holdout_report)
    if registry is not None:
        report_dir = settings.reports_dir / f"train-{cfg.model.family}-{stamp}"
        result.run_id, result.version = register_stage(
            registry,
            cfg=cfg,
            model_dir=model_dir,
            data=data,
            val_report=val_report,
            holdout_report=holdout_report,
            report_dir=report_dir,
        )
    return result
