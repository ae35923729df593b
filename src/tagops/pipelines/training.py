"""The training pipeline: pull → validate → split → train → evaluate on holdout → register → gate.

``tagops pipeline train [--config configs/pipeline.yaml]`` runs it on ZenML's local stack under
``TAGOPS_HOME/zenml``. Steps only translate between ZenML artifacts and the stage functions.

Caching: a step is reused only when its inputs' content, its parameters, its own code *and the tagops
package's code* (:func:`code_fingerprint`) are unchanged. Pulling, registering and promoting talk to the
outside world and are never cached.
"""

import hashlib
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from zenml import pipeline, step
from zenml.config import CachePolicy

from tagops.config import DataConfig, EvalConfig, GateConfig, PipelineConfig, TrainConfig
from tagops.settings import Settings


def code_fingerprint() -> str:
    """Hash of every source file of the tagops package: part of each cached step's cache key."""
    import tagops

    digest = hashlib.sha256()
    root = Path(tagops.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


# Artifacts whose materializer can hash its content (the data snapshot dict) are keyed by content; the
# others (pandas DataFrames have no content hash in ZenML) fall back to their artifact id, which changes
# whenever the step that made them re-ran. Without the id fallback a DataFrame input would add nothing to
# the key, and two steps with different frames (train vs. refit) would share a cached result.
CACHE = CachePolicy(
    include_artifact_ids=True,
    include_artifact_values=True,
    cache_func="tagops.pipelines.training.code_fingerprint",
)


def _model_params(raw: dict[str, Any]) -> Any:
    return TrainConfig.model_validate({"model": raw}).model


@step(enable_cache=False)
def pull_step(data: dict[str, Any]) -> Annotated[dict[str, str], "data_snapshot"]:
    """Fetch and verify the data (always runs: the check is cheap and the files may have changed)."""
    from tagops.data.stages import pull_stage

    snap = pull_stage(Settings(), DataConfig.model_validate(data))
    return {
        "dataset_path": str(snap.dataset_path),
        "holdout_path": str(snap.holdout_path),
        "dataset_sha256": snap.dataset_sha256,
        "holdout_sha256": snap.holdout_sha256,
    }


@step(cache_policy=CACHE)
def validate_step(
    snapshot: dict[str, str],
) -> tuple[Annotated[pd.DataFrame, "dataset"], Annotated[pd.DataFrame, "holdout"]]:
    """Validate both files and refuse leakage; the content hashes in ``snapshot`` key the cache."""
    from tagops.data.stages import DataSnapshot, validate_stage

    dataset, holdout = validate_stage(
        DataSnapshot(
            Path(snapshot["dataset_path"]),
            Path(snapshot["holdout_path"]),
            snapshot["dataset_sha256"],
            snapshot["holdout_sha256"],
        )
    )
    return dataset, holdout  # a literal tuple: ZenML reads multiple outputs from the return statement


@step(cache_policy=CACHE)
def split_step(
    dataset: pd.DataFrame, data: dict[str, Any]
) -> tuple[Annotated[pd.DataFrame, "train"], Annotated[pd.DataFrame, "val"]]:
    """Seeded stratified split."""
    from tagops.data.stages import split_stage

    train, val = split_stage(dataset, DataConfig.model_validate(data))
    return train, val


@step(cache_policy=CACHE)
def train_step(
    train: pd.DataFrame, val: pd.DataFrame, model: dict[str, Any], seed: int
) -> Annotated[str, "model_dir"]:
    """Fit one family; the model folder lives under TAGOPS_HOME and is addressed by its path.

    ``val`` lets a transformer keep its best epoch and stop early; the other families ignore it.
    """
    import uuid

    from tagops.workloads.fit import fit_stage

    params = _model_params(model)
    output = Settings().models_dir / "pipeline" / f"{params.family}-{uuid.uuid4().hex[:12]}"
    return str(fit_stage(train, params, seed=seed, output_dir=output, val=val))


@step(cache_policy=CACHE)
def refit_step(
    dataset: pd.DataFrame, model: dict[str, Any], seed: int, val_model_dir: str
) -> Annotated[str, "model_dir"]:
    """Refit the measured recipe on all of dataset.csv (a transformer keeps its early-stopped model)."""
    import uuid

    from tagops.workloads.fit import refit_stage

    params = _model_params(model)
    output = Settings().models_dir / "pipeline" / f"{params.family}-{uuid.uuid4().hex[:12]}"
    return str(refit_stage(dataset, params, seed=seed, val_model_dir=Path(val_model_dir), output_dir=output))


@step(cache_policy=CACHE)
def ensemble_step(member_dirs: list[str], model: dict[str, Any]) -> Annotated[str, "model_dir"]:
    """Assemble an ensemble from members this pipeline already trained (copied, never retrained)."""
    import shutil
    import uuid

    from tagops.config import EnsembleParams
    from tagops.models.ensemble import member_dirname, write_descriptor

    params = _model_params(model)
    assert isinstance(params, EnsembleParams)
    output = Settings().models_dir / "pipeline" / f"ensemble-{uuid.uuid4().hex[:12]}"
    for index, (member, source) in enumerate(zip(params.members, member_dirs, strict=True)):
        shutil.copytree(source, output / member_dirname(index, member.family))
    write_descriptor(output, params)
    return str(output)


@step(cache_policy=CACHE)
def evaluate_step(
    model_dir: str, frame: pd.DataFrame, evaluation: dict[str, Any]
) -> Annotated[dict[str, Any], "report"]:
    """Evaluate a saved model on a labelled frame."""
    from tagops.workloads.train import evaluate_stage

    return evaluate_stage(Path(model_dir), frame, EvalConfig.model_validate(evaluation))


@step(enable_cache=False)
def register_step(
    model_dir: str,
    snapshot: dict[str, str],
    val_report: dict[str, Any],
    holdout_report: dict[str, Any],
    train_config: dict[str, Any],
) -> Annotated[int, "model_version"]:
    """Log the run to MLflow and register the model as ``challenger``."""
    from tagops.data.stages import DataSnapshot
    from tagops.registry.client import Registry
    from tagops.workloads.train import register_stage

    settings = Settings()
    cfg = TrainConfig.model_validate(train_config)
    snap = DataSnapshot(
        Path(snapshot["dataset_path"]),
        Path(snapshot["holdout_path"]),
        snapshot["dataset_sha256"],
        snapshot["holdout_sha256"],
    )
    report_dir = settings.reports_dir / f"pipeline-{cfg.model.family}-{Path(model_dir).name}"
    _, version = register_stage(
        Registry(settings),
        cfg=cfg,
        model_dir=Path(model_dir),
        data=snap,
        val_report=val_report,
        holdout_report=holdout_report,
        report_dir=report_dir,
    )
    return version


@step(enable_cache=False)
def promote_step(
    versions: list[int],
    holdout: pd.DataFrame,
    snapshot: dict[str, str],
    evaluation: dict[str, Any],
    gate: dict[str, Any],
) -> Annotated[list[dict[str, Any]], "decisions"]:
    """Send each new version through the gate in order; the best that passes becomes champion."""
    from dataclasses import asdict

    from tagops.registry.client import Registry
    from tagops.workloads.promote import promote

    settings = Settings()
    registry = Registry(settings)
    decisions = []
    for version in versions:
        decision = promote(
            registry,
            holdout=holdout,
            eval_cfg=EvalConfig.model_validate(evaluation),
            gate=GateConfig.model_validate(gate),
            history=settings.promotion_history,
            version=version,
            holdout_sha256=snapshot["holdout_sha256"],
        )
        decisions.append({"version": version, **asdict(decision)})
    return decisions


@pipeline(enable_cache=True)
def training_pipeline(config: dict[str, Any]) -> None:
    """Train every configured family, evaluate on the holdout, register each, and gate them in order."""
    cfg = PipelineConfig.model_validate(config)
    data = cfg.data.model_dump(mode="json")
    evaluation = cfg.evaluation.model_dump(mode="json")
    snapshot = pull_step(data)
    dataset, holdout = validate_step(snapshot)
    train, val = split_step(dataset, data)
    versions = []
    trained: dict[str, tuple[Any, Any, Any]] = {}  # family -> (params, validation model, final model)
    for params in cfg.models:
        model = params.model_dump(mode="json")
        family = params.family
        members = _trained_members(params, trained)
        if members is not None:  # an ensemble of models trained above: assembled, not retrained
            val_dir = ensemble_step([m[1] for m in members], model, id=f"train_{family}")
        else:
            val_dir = train_step(train, val, model, cfg.seed, id=f"train_{family}")
        model_dir = val_dir
        val_report = evaluate_step(model_dir, val, evaluation, id=f"evaluate_val_{family}")
        if cfg.refit_full:  # validation has measured the recipe; the registered model learns from all rows
            if members is not None:
                model_dir = ensemble_step([m[2] for m in members], model, id=f"refit_{family}")
            else:
                model_dir = refit_step(dataset, model, cfg.seed, val_dir, id=f"refit_{family}")
        trained[family] = (params, val_dir, model_dir)
        holdout_report = evaluate_step(model_dir, holdout, evaluation, id=f"evaluate_holdout_{family}")
        train_config = cfg.train_config(params).model_dump(mode="json")
        versions.append(
            register_step(
                model_dir, snapshot, val_report, holdout_report, train_config, id=f"register_{family}"
            )
        )
    promote_step(versions, holdout, snapshot, evaluation, cfg.gate.model_dump(mode="json"))


def _trained_members(
    params: Any, trained: dict[str, tuple[Any, Any, Any]]
) -> list[tuple[Any, Any, Any]] | None:
    """The members of an ensemble this pipeline already trained with the same parameters, in order.

    ``None`` when ``params`` is not an ensemble or a member was not trained here (it is then trained as a
    model of its own).
    """
    from tagops.config import EnsembleParams

    if not isinstance(params, EnsembleParams):
        return None
    found = [trained.get(member.family) for member in params.members]
    if any(entry is None or entry[0] != member for entry, member in zip(found, params.members, strict=True)):
        return None
    return [entry for entry in found if entry is not None]


def run_training_pipeline(cfg: PipelineConfig, *, enable_cache: bool = True) -> dict[str, Any]:
    """Run the pipeline and return what it decided: versions, holdout F1 per family, the champion."""
    run = training_pipeline.with_options(enable_cache=enable_cache)(config=cfg.model_dump(mode="json"))
    if run is None:  # only remote, asynchronous orchestrators return nothing
        raise RuntimeError("the ZenML orchestrator returned no pipeline run")
    families = [m.family for m in cfg.models]
    summary: dict[str, Any] = {"run_name": run.name, "status": str(run.status), "models": []}
    steps = run.steps
    for family in families:
        report = steps[f"evaluate_holdout_{family}"].outputs["report"][0].load()
        version = steps[f"register_{family}"].outputs["model_version"][0].load()
        summary["models"].append(
            {
                "family": family,
                "version": version,
                "holdout_f1": report["overall"]["f1"],
                "holdout_macro_f1": report["overall"]["macro_f1"],
                "f1_ci95": report["overall"]["f1_ci95"],
                "cached": all(
                    str(steps[name].status) == "cached"
                    for name in (f"train_{family}", f"refit_{family}")
                    if name in steps
                ),
            }
        )
    summary["decisions"] = steps["promote_step"].outputs["decisions"][0].load()
    return summary
