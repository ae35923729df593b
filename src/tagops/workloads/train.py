"""Training stages and the single-model entry point.

``tagops train --model linear`` pulls and validates the data, splits it, fits the model, evaluates it on
the validation split and the holdout, and logs and registers it in MLflow with the alias ``challenger``.
Each stage is a plain function the ZenML pipeline wraps as a step.
"""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.config import (
    AnyModelParams,
    DataConfig,
    EnsembleParams,
    EvalConfig,
    ReferenceConfig,
    TrainConfig,
    TransformerParams,
)

if TYPE_CHECKING:
    import pandas as pd

    from tagops.models.transformer.ray_worker import Tracking
    from tagops.registry.client import Registry
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

#: Reference statistics are recorded at registration unless a caller passes ``reference=None``.
DEFAULT_REFERENCE = ReferenceConfig()

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
    train: pd.DataFrame,
    params: AnyModelParams,
    *,
    seed: int,
    output_dir: Path,
    val: pd.DataFrame | None = None,
    settings: Settings | None = None,
    tracking: Tracking | None = None,
    checkpoint_dir: Path | None = None,
) -> Path:
    """Fit one model family and save it to ``output_dir``; returns the folder.

    ``val`` is used by families that select an epoch and stop early (``transformer``); the others
    ignore it. A ``transformer`` with ``engine="ray"`` trains on Ray Train with its checkpoints in
    ``checkpoint_dir`` (default ``TAGOPS_HOME/ray_results/<output_dir name>``); fitting again with the
    same ``checkpoint_dir`` after an interruption resumes from the last checkpoint.
    """
    from tagops.data.clean import build_text
    from tagops.models import create_model

    if isinstance(params, EnsembleParams):
        return _fit_ensemble(
            train,
            params,
            seed=seed,
            output_dir=output_dir,
            val=val,
            settings=settings,
            tracking=tracking,
            checkpoint_dir=checkpoint_dir,
        )
    texts = [build_text(t, d) for t, d in zip(train["title"], train["description"], strict=True)]
    started = time.perf_counter()
    if isinstance(params, TransformerParams):
        model: Any = _fit_transformer(
            texts,
            train["tag"].tolist(),
            params,
            seed=seed,
            val=val,
            settings=settings,
            checkpoint_dir=checkpoint_dir,
            name=output_dir.name,
            tracking=tracking,
        )
    else:
        model = create_model(params)
        model.fit(texts, train["tag"].tolist(), seed=seed)
    logger.info("fitted %s on %d rows in %.1fs", params.family, len(texts), time.perf_counter() - started)
    model.save(output_dir)
    return output_dir


def _fit_ensemble(
    train: pd.DataFrame,
    params: EnsembleParams,
    *,
    seed: int,
    output_dir: Path,
    val: pd.DataFrame | None,
    settings: Settings | None,
    tracking: Tracking | None,
    checkpoint_dir: Path | None,
) -> Path:
    """Fit each member with :func:`fit_stage` into the ensemble's folder, then describe the ensemble."""
    from dataclasses import replace

    from tagops.models.ensemble import member_dirname, write_descriptor

    for index, member in enumerate(params.members):
        name = member_dirname(index, member.family)
        fit_stage(
            train,
            member,
            seed=seed,
            output_dir=output_dir / name,
            val=val,
            settings=settings,
            tracking=replace(tracking, prefix=f"{tracking.prefix}{member.family}.") if tracking else None,
            checkpoint_dir=(checkpoint_dir / f"{index}-{member.family}") if checkpoint_dir else None,
        )
    write_descriptor(output_dir, params)
    return output_dir


def ray_results_dir(settings: Settings) -> Path:
    """Where Ray Train and Ray Tune keep run state and checkpoints."""
    return settings.home / "ray_results"


def _fit_transformer(
    texts: list[str],
    labels: list[str],
    params: TransformerParams,
    *,
    seed: int,
    val: pd.DataFrame | None,
    settings: Settings | None,
    checkpoint_dir: Path | None,
    name: str,
    tracking: Tracking | None,
) -> Any:
    from tagops.data.clean import build_text

    val_texts = val_labels = None
    if val is not None:
        val_texts = [build_text(t, d) for t, d in zip(val["title"], val["description"], strict=True)]
        val_labels = val["tag"].tolist()
    if params.engine == "local":
        from tagops.models.transformer import TransformerModel

        return TransformerModel(params).fit(
            texts, labels, seed=seed, val_texts=val_texts, val_labels=val_labels
        )
    from tagops.models.transformer.ray_train import fit_transformer
    from tagops.settings import Settings

    settings = settings or Settings()
    checkpoint_dir = checkpoint_dir or ray_results_dir(settings) / name
    return fit_transformer(
        texts,
        labels,
        params=params,
        seed=seed,
        settings=settings,
        storage_dir=checkpoint_dir.parent,
        name=checkpoint_dir.name,
        val_texts=val_texts,
        val_labels=val_labels,
        tracking=tracking,
    )


def uses_ray_train(params: AnyModelParams) -> bool:
    """Whether fitting ``params`` runs Ray Train (and so checkpoints and can resume)."""
    if isinstance(params, EnsembleParams):
        return any(uses_ray_train(m) for m in params.members)
    return isinstance(params, TransformerParams) and params.engine == "ray"


def refit_stage(
    dataset: pd.DataFrame,
    params: AnyModelParams,
    *,
    seed: int,
    val_model_dir: Path,
    output_dir: Path,
    settings: Settings | None = None,
    tracking: Tracking | None = None,
    checkpoint_dir: Path | None = None,
) -> Path:
    """Refit a validated recipe on all of ``dataset``; returns the final model's folder.

    A transformer trains for the epoch count validation picked, or (``refit=False``, its default) keeps
    the validation-trained model itself, which is returned as is. Ensemble members follow their own
    family's rule; a kept member is copied into the ensemble's folder.
    """
    import shutil

    if isinstance(params, EnsembleParams):
        from dataclasses import replace

        from tagops.models.ensemble import member_dirname, write_descriptor

        for index, member in enumerate(params.members):
            name = member_dirname(index, member.family)
            target = output_dir / name
            final = refit_stage(
                dataset,
                member,
                seed=seed,
                val_model_dir=val_model_dir / name,
                output_dir=target,
                settings=settings,
                tracking=replace(tracking, prefix=f"{tracking.prefix}{member.family}.") if tracking else None,
                checkpoint_dir=(checkpoint_dir / f"{index}-{member.family}") if checkpoint_dir else None,
            )
            if final != target:
                shutil.copytree(final, target, dirs_exist_ok=True)
        write_descriptor(output_dir, params)
        return output_dir
    if isinstance(params, TransformerParams) and not params.refit:
        logger.info("transformer: keeping the early-stopped model (refit=False)")
        return val_model_dir
    return fit_stage(
        dataset,
        refit_params(params, val_model_dir),
        seed=seed,
        output_dir=output_dir,
        settings=settings,
        tracking=tracking,
        checkpoint_dir=checkpoint_dir,
    )


def refit_params(params: AnyModelParams, val_model_dir: Path) -> AnyModelParams:
    """The recipe for the refit on all rows: a transformer trains for the epoch validation picked."""
    if isinstance(params, EnsembleParams):
        from tagops.models.ensemble import member_dirname

        members = tuple(
            refit_params(m, val_model_dir / member_dirname(i, m.family)) for i, m in enumerate(params.members)
        )
        return params.model_copy(update={"members": members})
    if not isinstance(params, TransformerParams):
        return params
    from tagops.models.base import read_model_info

    best_epoch = int(read_model_info(val_model_dir).get("training", {}).get("best_epoch") or params.epochs)
    return params.model_copy(update={"epochs": max(1, best_epoch), "patience": None})


def evaluate_stage(model_dir: Path, frame: pd.DataFrame, cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate a saved model on a labelled frame."""
    from tagops.evaluate import evaluate_predictor
    from tagops.inference.predictor import Predictor

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
            has_reference = _log_reference(
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


def reference_stage(
    model_dir: Path, data: DataSnapshot, cfg: ReferenceConfig, *, holdout_f1: float | None = None
) -> dict[str, Any]:
    """Reference statistics of a saved model: its answers on the holdout, the vocabulary of dataset.csv.

    The holdout is the one labelled set the model never trained on, so its confidence there is what
    production should look like; the vocabulary comes from the training texts, so unknown words in
    traffic are words the model never saw.
    """
    from tagops.data.validate import load_projects
    from tagops.inference.predictor import Predictor
    from tagops.models.base import read_model_info
    from tagops.monitoring.reference import create_embedder, reference_stats

    started = time.perf_counter()
    dataset = load_projects(data.dataset_path)
    holdout = load_projects(data.holdout_path)
    predictor = Predictor.from_directory(model_dir)
    texts = Predictor.texts(holdout["title"].tolist(), holdout["description"].tolist())
    proba = predictor.model.predict_proba(texts)
    labels = list(predictor.model.labels)
    stats = reference_stats(
        texts,
        [labels[i] for i in proba.argmax(axis=1)],
        proba.max(axis=1).tolist(),
        holdout["tag"].tolist(),
        create_embedder(cfg.embedder),
        vocabulary_texts=Predictor.texts(dataset["title"].tolist(), dataset["description"].tolist()),
        cfg=cfg,
        holdout_f1=holdout_f1,
        model={
            "family": read_model_info(model_dir).get("family"),
            "dataset_sha256": data.dataset_sha256,
            "holdout_sha256": data.holdout_sha256,
        },
    )
    logger.info("reference statistics (%s) in %.1fs", cfg.embedder, time.perf_counter() - started)
    return stats


def _log_reference(
    registry: Registry, model_dir: Path, data: DataSnapshot, cfg: ReferenceConfig, *, holdout_f1: float
) -> bool:
    """Store ``reference_stats.json`` in the active run; a failure is logged and does not stop registering.

    Monitoring is auxiliary to the model: a model without a reference can still serve, and
    ``tagops monitor`` then says that its reference statistics are missing.
    """
    from tagops.registry.client import REFERENCE_STATS_FILE, REFERENCE_STATS_TAG

    try:
        stats = reference_stage(model_dir, data, cfg, holdout_f1=holdout_f1)
        registry.log_dict(stats, REFERENCE_STATS_FILE)
    except Exception:
        logger.exception("reference statistics not recorded; tagops monitor cannot check this model")
        return False
    registry.set_tags({REFERENCE_STATS_TAG: REFERENCE_STATS_FILE})
    return True


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
        from tagops.models.transformer.ray_worker import Tracking

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
