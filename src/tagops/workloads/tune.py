"""Hyper-parameter tuning with Ray Tune: Optuna search, ASHA early stopping, MLflow child runs.

``tagops tune --model transformer|linear --trials N [--config configs/tune.yaml]`` searches the space in
:class:`tagops.config.TuneConfig`, every trial logging to an MLflow child run of one parent run; the
best trial's parameters are then trained through the normal path (``run_training``),
registered as ``challenger`` and sent through the promotion gate. ``tagops tune --resume NAME`` continues
an interrupted search: finished trials are kept, unfinished ones run again.

What one trial does (the search space, the trainable, its MLflow child run) is :mod:`tagops.workloads.trial`;
this module runs the search, follows its progress, resumes it and registers its best trial.

Concurrency follows the cluster: ``floor(CPUs / cpus_per_trial)`` trials at once (the embedded cluster,
or the one ``RAY_ADDRESS`` names).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.config import LinearParams, TrainConfig, TransformerParams, TuneConfig
from tagops.workloads.trial import METRIC, Family, run_trial, search_space, trial_params

if TYPE_CHECKING:
    from tagops.registry.client import Registry
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

TUNE_RECORD = "tagops_tune.json"

#: Called as trials finish: trials finished (completed, stopped early or failed), trials in the search.
OnTrial = Callable[[int, int], None]


@dataclass
class TuneResult:
    """What a search found and what became of its best trial."""

    name: str
    family: str
    trials: list[dict[str, Any]]
    best_params: dict[str, Any]
    best_val_f1: float
    default_val_f1: float | None
    version: int | None = None
    holdout_f1: float | None = None
    gate: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- progress
_TRIAL_LISTENER: ContextVar[OnTrial | None] = ContextVar("tagops_trial_listener", default=None)


@contextmanager
def _trial_listener(listener: OnTrial | None) -> Iterator[None]:
    token = _TRIAL_LISTENER.set(listener)
    try:
        yield
    finally:
        _TRIAL_LISTENER.reset(token)


def _report_trials(done: int, total: int) -> None:
    """Tell the search's listener how many trials have finished; its errors never fail the search."""
    listener = _TRIAL_LISTENER.get()
    if listener is None:
        return
    try:
        listener(done, total)
    except Exception as error:
        logger.debug("the trial listener failed: %s", error)


@cache
def trial_progress_class() -> type[Any]:
    """The Ray Tune callback class, defined on first use so that importing this module imports no Ray.

    Tune saves its callbacks with the experiment and a resumed search runs the saved ones, so the
    callback holds no listener: it calls :func:`_report_trials`, which reads the listener of the search
    running now (:func:`run_tuning`'s ``on_trial``).
    """
    from ray import tune

    class TrialProgress(tune.Callback):  # type: ignore[misc]
        """Runs in the driver after each step of Tune's loop: counts the trials that have ended."""

        def __init__(self, trials: int) -> None:
            self.trials = trials
            self.reported = -1

        def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
            done = sum(1 for trial in trials if trial.status in ("TERMINATED", "ERROR"))
            if done != self.reported:
                self.reported = done
                _report_trials(done, max(self.trials, len(trials)))

    return TrialProgress


# ------------------------------------------------------------------------------------------ the search
def tune_dir(settings: Settings) -> Path:
    """Where Ray Tune keeps experiments (beside Ray Train's runs)."""
    return settings.home / "ray_results"


def run_tuning(
    cfg: TuneConfig,
    settings: Settings,
    *,
    family: Family,
    registry: Registry | None = None,
    name: str | None = None,
    resume: bool = False,
    on_trial: OnTrial | None = None,
) -> TuneResult:
    """Search, then train, register and gate the best trial's parameters (when a registry is given).

    ``on_trial(done, total)``, when given, is called in this process as trials end (a progress bar).
    """
    from tagops.data.stages import split_stage, validate_stage
    from tagops.models.transformer.network import check_encoders
    from tagops.warehouse.training import data_stage

    check_encoders([cfg.transformer] if family == "transformer" else [])
    snapshot = data_stage(settings, cfg.data)
    dataset, holdout = validate_stage(snapshot)
    train, val = split_stage(dataset, cfg.data)
    name = name or f"tune-{family}-{time.strftime('%Y%m%d-%H%M%S')}"
    record_path = tune_dir(settings) / name / TUNE_RECORD
    record: dict[str, Any] = json.loads(record_path.read_text()) if resume else {}
    parent_run_id: str | None = record.get("mlflow_run_id")
    if registry is not None and parent_run_id is None:
        parent_run_id = registry.create_run(name, tags={"family": family, "tagops.tune": name})
    record.update(
        name=name,
        family=family,
        config=cfg.model_dump(mode="json"),
        dataset_sha256=snapshot.dataset_sha256,
        mlflow_run_id=parent_run_id,
        status="running",
    )
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2, sort_keys=True))
    logger.info("tuning %s as %s (if interrupted: tagops tune --resume %s)", family, name, name)

    from tagops.data.clean import build_text

    def texts(frame: Any) -> list[str]:
        return [build_text(t, d) for t, d in zip(frame["title"], frame["description"], strict=True)]

    data = {
        "train_texts": texts(train),
        "train_labels": train["tag"].tolist(),
        "val_texts": texts(val),
        "val_labels": val["tag"].tolist(),
    }
    tracking = None
    if registry is not None and parent_run_id is not None:
        tracking = {
            "tracking_uri": settings.tracking_uri,
            "experiment_id": registry.experiment_id,
            "parent_run_id": parent_run_id,
            "name": name,
        }
    with _trial_listener(on_trial):
        trials = _search(cfg, settings, family=family, name=name, data=data, tracking=tracking, resume=resume)
    if tracking is not None:
        _close_unfinished(tracking["tracking_uri"], trials)
    completed = [t for t in trials if t.get("best_val_f1") is not None]
    if not completed:
        raise RuntimeError(f"tuning run {name}: no trial reported a result")
    # On a tie the default wins: a search that found nothing better changes nothing.
    best = max(completed, key=lambda t: (t["best_val_f1"], t["default"], -t["index"]))
    default = next((t for t in completed if t["default"]), None)
    best_params = trial_params(cfg, family, best["config"])
    result = TuneResult(
        name=name,
        family=family,
        trials=trials,
        best_params=best_params.model_dump(mode="json"),
        best_val_f1=float(best["best_val_f1"]),
        default_val_f1=float(default["best_val_f1"]) if default else None,
    )
    if registry is not None:
        _register_best(cfg, settings, registry, result, best_params, holdout, snapshot, parent_run_id)
    record.update(status="finished", best=result.best_params, version=result.version)
    record_path.write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    return result


def _search(
    cfg: TuneConfig,
    settings: Settings,
    *,
    family: Family,
    name: str,
    data: dict[str, list[str]],
    tracking: dict[str, str] | None,
    resume: bool,
) -> list[dict[str, Any]]:
    from tagops.runtime import ray_session

    with ray_session(settings) as resources:
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search import ConcurrencyLimiter
        from ray.tune.search.optuna import OptunaSearch

        cluster_cpus = float(resources.get("CPU", 1.0))
        cpus = cfg.cpus_per_trial or (2 if family == "transformer" else 1)
        cpus = max(1, min(cpus, math.floor(cluster_cpus)))
        concurrency = cfg.max_concurrent or max(1, math.floor(cluster_cpus / cpus))
        logger.info("%d trial(s) at once, %d CPU each (cluster: %g CPUs)", concurrency, cpus, cluster_cpus)
        trainable = tune.with_resources(
            tune.with_parameters(
                run_trial,
                tune_config=cfg.model_dump(mode="json"),
                family=family,
                data=data,
                threads=cpus,
                tracking=tracking,
            ),
            {"cpu": cpus},
        )
        space, default = search_space(cfg, family)
        max_epochs = cfg.transformer_space.epochs.high if family == "transformer" else 1
        path = tune_dir(settings) / name
        if resume and tune.Tuner.can_restore(str(path)):
            tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True, resume_errored=True)
        else:
            searcher = OptunaSearch(points_to_evaluate=[default], seed=cfg.seed)
            tuner = tune.Tuner(
                trainable,
                param_space=space,
                tune_config=tune.TuneConfig(
                    metric=METRIC,
                    mode="max",
                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrency),
                    scheduler=ASHAScheduler(
                        time_attr="epoch",
                        max_t=max_epochs,
                        grace_period=min(cfg.grace_period, max_epochs),
                        reduction_factor=cfg.reduction_factor,
                    ),
                    num_samples=cfg.trials,
                ),
                run_config=tune.RunConfig(
                    name=name,
                    storage_path=str(tune_dir(settings)),
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=0),
                    callbacks=[trial_progress_class()(cfg.trials)],
                ),
            )
        grid = tuner.fit()
    trials: list[dict[str, Any]] = []
    for position in range(len(grid)):
        result = grid[position]
        metrics = result.metrics or {}
        frame = result.metrics_dataframe
        best_f1 = float(frame[METRIC].max()) if frame is not None and METRIC in frame else None
        trials.append(
            {
                "trial": metrics.get("trial_id"),
                "config": dict(result.config or {}),
                "best_val_f1": best_f1,
                "epochs": int(metrics.get("epoch", 0)),
                "mlflow_run_id": metrics.get("mlflow_run_id") or None,
                "error": str(result.error) if result.error else None,
            }
        )
    # The family's default was evaluated first (Optuna's points_to_evaluate); it is listed first.
    trials.sort(key=lambda t: not _same_point(t["config"], default))
    for index, trial in enumerate(trials):
        trial["index"] = index
        trial["default"] = _same_point(trial["config"], default)
    return trials


def _same_point(config: dict[str, Any], point: dict[str, Any]) -> bool:
    """Whether a trial's sampled config is ``point`` (floats compared to 1e-9 relative)."""
    if config.keys() != point.keys():
        return False
    return all(
        math.isclose(float(v), float(point[k]), rel_tol=1e-9)
        if isinstance(v, int | float) and not isinstance(v, bool)
        else v == point[k]
        for k, v in config.items()
    )


def _close_unfinished(tracking_uri: str, trials: list[dict[str, Any]]) -> None:
    """Trials ASHA stopped never reached their own end: mark their MLflow runs KILLED."""
    import contextlib

    from tagops.registry.runs import close_run, run_status

    for trial in trials:
        run_id = trial.get("mlflow_run_id")
        if run_id and run_status(tracking_uri, run_id) == "RUNNING":
            with contextlib.suppress(Exception):
                close_run(tracking_uri, run_id, status="KILLED")


def _register_best(
    cfg: TuneConfig,
    settings: Settings,
    registry: Registry,
    result: TuneResult,
    params: TransformerParams | LinearParams,
    holdout: Any,
    snapshot: Any,
    parent_run_id: str | None,
) -> None:
    """Train the best parameters through the normal path, register as challenger, run the gate."""
    from dataclasses import asdict

    from tagops.workloads.promote import promote
    from tagops.workloads.train import run_training

    train_cfg = TrainConfig(
        data=cfg.data,
        model=params,
        evaluation=cfg.evaluation,
        calibration=cfg.calibration,
        seed=cfg.seed,
        refit_full=cfg.refit_full,
    )
    trained = run_training(train_cfg, settings, registry=registry, data=snapshot)
    result.version = trained.version
    result.holdout_f1 = float(trained.holdout_report["overall"]["f1"])
    decision = promote(
        registry,
        holdout=holdout,
        eval_cfg=cfg.evaluation,
        gate=cfg.gate,
        history=settings.promotion_history,
        version=trained.version,
        holdout_sha256=snapshot.holdout_sha256,
    )
    result.gate = asdict(decision)
    if parent_run_id is not None:
        from tagops.registry.runs import close_run, log_to_run

        log_to_run(
            settings.tracking_uri,
            parent_run_id,
            metrics={
                "best_val_f1": result.best_val_f1,
                "default_val_f1": result.default_val_f1 or 0.0,
                "holdout_f1": result.holdout_f1,
                "trials": float(len(result.trials)),
            },
            params={"best": result.best_params, "registered_version": result.version},
        )
        close_run(settings.tracking_uri, parent_run_id)
