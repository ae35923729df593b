"""The retraining pipeline: :func:`tagops.workloads.retrain.retrain_plan` as a ZenML pipeline.

``tagops retrain [--if-needed] [--no-promote]`` consults the policy first (in the CLI) and, when it says
yes, runs this pipeline on ZenML's local stack under ``TAGOPS_HOME/zenml``. Each step only translates
between ZenML artifacts and one stage of :mod:`~tagops.workloads.retrain`. Nothing is cached: the
prediction log, the registry and the service change between runs. The service's admin key never becomes
an artifact: the reload step reads it from the environment.
"""

from typing import Annotated, Any

import pandas as pd
from zenml import pipeline, step

from tagops.config import RetrainConfig
from tagops.data.stages import DataSnapshot
from tagops.pipelines.adapter import (
    ensure_source_root,
    from_parameter,
    run_settings,
    secrets_for_steps,
    to_parameter,
    wire,
)
from tagops.workloads.retrain import retrain_plan, retrain_result
from tagops.workloads.retrain_policy import RetrainDecision


@step(enable_cache=False)
def feedback_step(
    retrain: dict[str, Any],
) -> tuple[
    Annotated[dict[str, str], "original"],
    Annotated[pd.DataFrame, "dataset"],
    Annotated[pd.DataFrame, "holdout"],
    Annotated[pd.DataFrame, "feedback"],
    Annotated[pd.DataFrame, "recent"],
    Annotated[dict[str, int], "counts"],
]:
    """The original data and the trusted feedback rows from the prediction log."""
    from tagops.workloads.retrain import feedback_stage

    original, dataset, holdout, feedback, recent, counts = feedback_stage(
        run_settings(), from_parameter(RetrainConfig, retrain)
    )
    return original.to_json(), dataset, holdout, feedback, recent, counts


@step(enable_cache=False)
def training_data_step(
    original: dict[str, str], dataset: pd.DataFrame, feedback: pd.DataFrame, recent: pd.DataFrame
) -> Annotated[dict[str, str], "training_data"]:
    """dataset.csv + feedback rows, written as the challenger's dataset."""
    from tagops.workloads.retrain import training_data_stage

    data = training_data_stage(run_settings(), DataSnapshot.from_json(original), dataset, feedback, recent)
    return data.to_json()


@step(enable_cache=False)
def challenger_step(retrain: dict[str, Any], training_data: dict[str, str]) -> Annotated[int, "challenger"]:
    """Train the configured family on the augmented data; register it as ``challenger``."""
    from tagops.workloads.retrain import challenger_stage

    cfg = from_parameter(RetrainConfig, retrain)
    return challenger_stage(run_settings(), cfg, DataSnapshot.from_json(training_data))


@step(enable_cache=False)
def evaluate_step(
    retrain: dict[str, Any], challenger: int, holdout: pd.DataFrame, recent: pd.DataFrame
) -> Annotated[dict[str, Any], "evaluation"]:
    """Champion and challenger on the holdout and the recent window, and both gates' verdict."""
    from tagops.workloads.retrain import evaluation_stage

    return evaluation_stage(
        run_settings(), from_parameter(RetrainConfig, retrain), challenger, holdout, recent
    )


@step(enable_cache=False)
def promote_step(
    retrain: dict[str, Any],
    challenger: int,
    evaluation: dict[str, Any],
    training_data: dict[str, str],
    counts: dict[str, int],
    trigger: str,
    promote: bool,
) -> Annotated[bool, "promoted"]:
    """Record the decision with its trigger and move ``champion`` if both gates passed (if asked to)."""
    from tagops.workloads.retrain import promote_stage

    return promote_stage(
        run_settings(),
        from_parameter(RetrainConfig, retrain),
        challenger,
        evaluation,
        DataSnapshot.from_json(training_data),
        counts,
        trigger,
        promote,
    )


@step(enable_cache=False)
def reload_step(
    retrain: dict[str, Any], promoted: bool, promote: bool
) -> Annotated[dict[str, Any], "reload"]:
    """Tell the configured service to reload; an empty dict when there was nothing to reload."""
    from tagops.workloads.retrain import reload_stage

    return reload_stage(run_settings(), from_parameter(RetrainConfig, retrain), promoted, promote) or {}


#: The step that runs each stage function of the retraining plan.
STEPS = {
    "feedback_stage": feedback_step,
    "training_data_stage": training_data_step,
    "challenger_stage": challenger_step,
    "evaluation_stage": evaluate_step,
    "promote_stage": promote_step,
    "reload_stage": reload_step,
}


@pipeline(enable_cache=False)
def retraining_pipeline(config: dict[str, Any], trigger: str, promote: bool) -> None:
    """Retrain with feedback, gate on holdout and recent window, promote, reload."""
    wire(retrain_plan(from_parameter(RetrainConfig, config), trigger=trigger, promote=promote), STEPS)


def run_retraining_pipeline(cfg: RetrainConfig, *, trigger: str, promote: bool = True) -> dict[str, Any]:
    """Run the pipeline and return what it did (the JSON of the in-process path, with the run's name)."""
    import time

    ensure_source_root()
    started = time.perf_counter()
    with secrets_for_steps(cfg):
        run = retraining_pipeline(config=to_parameter(cfg), trigger=trigger, promote=promote)
    if run is None:  # only remote, asynchronous orchestrators return nothing
        raise RuntimeError("the ZenML orchestrator returned no pipeline run")
    results = {}
    for stage in retrain_plan(cfg, trigger=trigger, promote=promote):
        for output in stage.outputs:
            results[output] = run.steps[stage.name].outputs[output][0].load()
    results["reload"] = results["reload"] or None
    outcome = retrain_result(RetrainDecision(True, trigger), results, time.perf_counter() - started)
    return {"run_name": run.name, **outcome.to_json()}
