"""The retraining pipeline: feedback rows → challenger → evaluate → gate → promote → reload the service.

``tagops retrain [--if-needed] [--no-promote]`` consults the policy first (in the CLI) and, when it says
yes, runs this pipeline on ZenML's local stack under ``TAGOPS_HOME/zenml``. Steps only translate between
ZenML artifacts and the stages of :mod:`~tagops.workloads.retrain`. Nothing is cached: the prediction log,
the registry and the service change between runs. The service's admin key never becomes an artifact:
the reload step reads it from the environment.
"""

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from zenml import pipeline, step

from tagops.config import RetrainConfig
from tagops.settings import Settings


@step(enable_cache=False)
def feedback_step(
    config: dict[str, Any],
) -> tuple[
    Annotated[dict[str, str], "training_data"],
    Annotated[pd.DataFrame, "holdout"],
    Annotated[pd.DataFrame, "recent"],
    Annotated[dict[str, int], "feedback_counts"],
]:
    """Original data + validated feedback rows, written as the challenger's dataset; the recent window."""
    import time

    from tagops.workloads.retrain import collect_feedback_stage, write_training_data

    cfg = RetrainConfig.model_validate(config)
    settings = Settings()
    original, dataset, holdout, rows = collect_feedback_stage(cfg, settings)
    folder = settings.home / "retrain" / time.strftime("%Y%m%d-%H%M%S")
    data = write_training_data(dataset, rows.train, original.holdout_path, folder)
    rows.recent.to_csv(folder / "recent.csv", index=False)
    snapshot = {
        "dataset_path": str(data.dataset_path),
        "holdout_path": str(data.holdout_path),
        "dataset_sha256": data.dataset_sha256,
        "holdout_sha256": data.holdout_sha256,
    }
    return snapshot, holdout, rows.recent, rows.counts


@step(enable_cache=False)
def challenger_step(config: dict[str, Any], training_data: dict[str, str]) -> Annotated[int, "challenger"]:
    """Train the configured family on the augmented data; register it as ``challenger``."""
    from tagops.data.stages import DataSnapshot
    from tagops.registry.client import Registry
    from tagops.workloads.retrain import train_challenger_stage

    settings = Settings()
    data = DataSnapshot(
        Path(training_data["dataset_path"]),
        Path(training_data["holdout_path"]),
        training_data["dataset_sha256"],
        training_data["holdout_sha256"],
    )
    return train_challenger_stage(RetrainConfig.model_validate(config), settings, data, Registry(settings))


@step(enable_cache=False)
def evaluate_step(
    config: dict[str, Any], challenger: int, holdout: pd.DataFrame, recent: pd.DataFrame
) -> Annotated[dict[str, Any], "evaluation"]:
    """Champion and challenger on the holdout and the recent window, and both gates' verdict."""
    from tagops.registry.client import CHAMPION, Registry
    from tagops.workloads.retrain import evaluate_versions_stage, gate_stage

    cfg = RetrainConfig.model_validate(config)
    registry = Registry(Settings())
    champion = registry.alias_version(CHAMPION)
    reports = evaluate_versions_stage(
        registry, champion=champion, challenger=challenger, holdout=holdout, recent=recent, cfg=cfg
    )
    return {"champion": champion, "reports": reports, "gate": gate_stage(reports, cfg)}


@step(enable_cache=False)
def promote_step(
    config: dict[str, Any],
    challenger: int,
    evaluation: dict[str, Any],
    training_data: dict[str, str],
    feedback_counts: dict[str, int],
    trigger: str,
    promote: bool,
) -> Annotated[bool, "promoted"]:
    """Record the decision with its trigger and move ``champion`` if both gates passed (if asked to)."""
    from tagops.registry.client import Registry
    from tagops.workloads.retrain import promote_stage

    if not promote:
        return False
    settings = Settings()
    return promote_stage(
        Registry(settings),
        settings,
        challenger=challenger,
        champion=evaluation["champion"],
        gate=evaluation["gate"],
        cfg=RetrainConfig.model_validate(config),
        trigger=trigger,
        holdout_sha256=training_data["holdout_sha256"],
        evidence={"feedback": feedback_counts},
    )


@step(enable_cache=False)
def reload_step(config: dict[str, Any], promoted: bool, promote: bool) -> Annotated[dict[str, Any], "reload"]:
    """Tell the configured service to reload (a new champion, or a new challenger for its shadow)."""
    from tagops.workloads.retrain import reload_service, service_target

    if promote and not promoted:
        return {"skipped": "nothing promoted"}
    cfg = RetrainConfig.model_validate(config)
    url, key = service_target(cfg)
    return reload_service(url, key, timeout_s=cfg.reload_timeout_s) or {"skipped": "no service configured"}


@pipeline(enable_cache=False)
def retraining_pipeline(config: dict[str, Any], trigger: str, promote: bool) -> None:
    """Retrain with feedback, gate on holdout and recent window, promote, reload."""
    training_data, holdout, recent, counts = feedback_step(config)
    challenger = challenger_step(config, training_data)
    evaluation = evaluate_step(config, challenger, holdout, recent)
    promoted = promote_step(config, challenger, evaluation, training_data, counts, trigger, promote)
    reload_step(config, promoted, promote)


def run_retraining_pipeline(cfg: RetrainConfig, *, trigger: str, promote: bool = True) -> dict[str, Any]:
    """Run the pipeline and return what it did (the shape of ``RetrainResult.to_json``)."""
    run = retraining_pipeline(config=cfg.model_dump(mode="json"), trigger=trigger, promote=promote)
    if run is None:  # only remote, asynchronous orchestrators return nothing
        raise RuntimeError("the ZenML orchestrator returned no pipeline run")
    steps = run.steps
    evaluation = steps["evaluate_step"].outputs["evaluation"][0].load()
    reports = {
        name: None if r is None else {k: r["overall"][k] for k in ("f1", "f1_ci95", "num_samples")}
        for name, r in evaluation["reports"].items()
    }
    reload = steps["reload_step"].outputs["reload"][0].load()
    return {
        "run_name": run.name,
        "decision": {"run": True, "reason": trigger},
        "counts": steps["feedback_step"].outputs["feedback_counts"][0].load(),
        "challenger_version": steps["challenger_step"].outputs["challenger"][0].load(),
        "champion_version": evaluation["champion"],
        "reports": reports,
        "gate": evaluation["gate"],
        "promoted": steps["promote_step"].outputs["promoted"][0].load(),
        "reload": None if "skipped" in reload else reload,
    }
