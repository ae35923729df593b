"""The training pipeline: :func:`tagops.workloads.train.training_plan` as a ZenML pipeline.

``tagops pipeline train [--config configs/pipeline.yaml]`` runs it on ZenML's local stack under
``TAGOPS_HOME/zenml``. The pipeline walks the same list of stages the in-process path runs; each step
below only translates between ZenML artifacts (JSON, DataFrames, folder paths) and one stage function.

Caching: a step is reused only when its inputs' content, its parameters, its own code *and the tagops
package's code* (:func:`code_fingerprint`) are unchanged. Pulling, registering and promoting talk to the
outside world and are never cached.
"""

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import pandas as pd
from zenml import pipeline, step
from zenml.config import CachePolicy

from tagops.config import (
    AugmentConfig,
    CalibrationConfig,
    DataConfig,
    EnsembleParams,
    EvalConfig,
    GateConfig,
    PipelineConfig,
    TrainConfig,
)
from tagops.pipelines.adapter import ensure_source_root, run_settings, wire
from tagops.workloads.train import training_plan

if TYPE_CHECKING:
    from tagops.metrics import EvalReport


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
    """Fetch and verify the data, or export a warehouse snapshot (always runs: the files may have changed).

    A snapshot's id is also recorded as metadata of the pipeline run, so the run is found by the data
    it trained on.
    """
    from tagops.warehouse.training import data_stage

    snapshot = data_stage(run_settings(), DataConfig.model_validate(data))
    if snapshot.snapshot_id is not None:
        from zenml import get_step_context, log_metadata

        log_metadata(
            metadata={"snapshot_id": snapshot.snapshot_id},
            run_id_name_or_prefix=get_step_context().pipeline_run.id,
        )
    return snapshot.to_json()


@step(cache_policy=CACHE)
def validate_step(
    data: dict[str, str],
) -> tuple[Annotated[pd.DataFrame, "dataset"], Annotated[pd.DataFrame, "holdout"]]:
    """Validate both files and refuse leakage; the content hashes in ``data`` key the cache."""
    from tagops.data.stages import DataSnapshot, validate_stage

    dataset, holdout = validate_stage(DataSnapshot.from_json(data))
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
def augment_step(
    train: pd.DataFrame, dataset: pd.DataFrame, augmentation: dict[str, Any], seed: int
) -> tuple[Annotated[pd.DataFrame, "train_rows"], Annotated[pd.DataFrame, "dataset_rows"]]:
    """The rows models fit on: training split and dataset, with short-form copies when configured."""
    from tagops.data.augment import augment_stage

    train_rows, dataset_rows = augment_stage(train, dataset, AugmentConfig.model_validate(augmentation), seed)
    return train_rows, dataset_rows  # a tuple literal: ZenML reads the return statement for two artifacts


@step(cache_policy=CACHE)
def train_step(
    train: pd.DataFrame, val: pd.DataFrame, model: dict[str, Any], seed: int
) -> Annotated[str, "model_dir"]:
    """Fit one family; the model folder lives under TAGOPS_HOME and is addressed by its path."""
    from tagops.workloads.fit import train_stage

    return str(train_stage(run_settings(), train, val, _model_params(model), seed))


@step(cache_policy=CACHE)
def refit_step(
    dataset: pd.DataFrame, model: dict[str, Any], seed: int, val_model_dir: str
) -> Annotated[str, "model_dir"]:
    """Refit the measured recipe on all of dataset.csv (a transformer keeps its early-stopped model)."""
    from tagops.workloads.fit import refit_model_stage

    params = _model_params(model)
    return str(refit_model_stage(run_settings(), dataset, params, seed, Path(val_model_dir)))


@step(cache_policy=CACHE)
def ensemble_step(member_dirs: list[str], model: dict[str, Any]) -> Annotated[str, "model_dir"]:
    """Assemble an ensemble from members this pipeline already trained (copied, never retrained)."""
    from tagops.workloads.fit import assemble_stage

    params = _model_params(model)
    assert isinstance(params, EnsembleParams)
    return str(assemble_stage(run_settings(), [Path(d) for d in member_dirs], params))


@step(cache_policy=CACHE)
def calibrate_step(
    model_dir: str, val: pd.DataFrame, calibration: dict[str, Any], evaluation: dict[str, Any]
) -> Annotated[dict[str, Any], "calibration"]:
    """Fit the model's temperature and abstention threshold on validation; saved in its folder."""
    from tagops.workloads.calibrate import calibrate_stage

    return calibrate_stage(
        Path(model_dir),
        val,
        CalibrationConfig.model_validate(calibration),
        EvalConfig.model_validate(evaluation),
    )


@step(cache_policy=CACHE)
def carry_calibration_step(model_dir: str, val_model_dir: str) -> Annotated[str, "model_dir"]:
    """Give the refit model the calibration its recipe was validated with."""
    from tagops.workloads.calibrate import carry_calibration_stage

    return str(carry_calibration_stage(Path(model_dir), Path(val_model_dir)))


@step(cache_policy=CACHE)
def evaluate_step(
    model_dir: str, frame: pd.DataFrame, evaluation: dict[str, Any]
) -> Annotated[dict[str, Any], "report"]:
    """Evaluate a saved model on a labelled frame."""
    from tagops.workloads.train import evaluate_stage

    return dict(evaluate_stage(Path(model_dir), frame, EvalConfig.model_validate(evaluation)))


@step(enable_cache=False)
def register_step(
    model_dir: str,
    snapshot: dict[str, str],
    val_report: dict[str, Any],
    holdout_report: dict[str, Any],
    train_config: dict[str, Any],
) -> tuple[Annotated[int, "model_version"], Annotated[str, "run_id"]]:
    """Log the run to MLflow and register the model as ``challenger``."""
    from tagops.data.stages import DataSnapshot
    from tagops.workloads.register import register_model_stage

    version, run_id = register_model_stage(
        run_settings(),
        Path(model_dir),
        DataSnapshot.from_json(snapshot),
        cast("EvalReport", val_report),
        cast("EvalReport", holdout_report),
        TrainConfig.model_validate(train_config),
    )
    return version, run_id


@step(enable_cache=False)
def promote_step(
    versions: list[int],
    holdout: pd.DataFrame,
    snapshot: dict[str, str],
    evaluation: dict[str, Any],
    gate: dict[str, Any],
) -> Annotated[list[dict[str, Any]], "decisions"]:
    """Send each new version through the gate in order; the best that passes becomes champion."""
    from tagops.data.stages import DataSnapshot
    from tagops.workloads.train import promote_stage

    return promote_stage(
        run_settings(),
        versions,
        holdout,
        DataSnapshot.from_json(snapshot),
        EvalConfig.model_validate(evaluation),
        GateConfig.model_validate(gate),
    )


#: The step that runs each stage function of the training plan.
STEPS = {
    "data_stage": pull_step,
    "validate_stage": validate_step,
    "split_stage": split_step,
    "augment_stage": augment_step,
    "train_stage": train_step,
    "refit_model_stage": refit_step,
    "assemble_stage": ensemble_step,
    "calibrate_stage": calibrate_step,
    "carry_calibration_stage": carry_calibration_step,
    "evaluate_stage": evaluate_step,
    "register_model_stage": register_step,
    "promote_stage": promote_step,
}


@pipeline(enable_cache=True)
def training_pipeline(config: dict[str, Any]) -> None:
    """Train every configured family, evaluate on the holdout, register each, and gate them in order."""
    wire(training_plan(PipelineConfig.model_validate(config)), STEPS)


def run_training_pipeline(cfg: PipelineConfig, *, enable_cache: bool = True) -> dict[str, Any]:
    """Run the pipeline and return what it decided: versions, holdout F1 per family, the champion."""
    ensure_source_root()
    run = training_pipeline.with_options(enable_cache=enable_cache)(config=cfg.model_dump(mode="json"))
    if run is None:  # only remote, asynchronous orchestrators return nothing
        raise RuntimeError("the ZenML orchestrator returned no pipeline run")
    steps = run.steps
    snapshot = steps["pull_step"].outputs["data_snapshot"][0].load()
    summary: dict[str, Any] = {
        "run_name": run.name,
        "status": str(run.status),
        "snapshot_id": snapshot.get("snapshot_id"),
        "models": [],
    }
    for params in cfg.models:
        family = params.family
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
