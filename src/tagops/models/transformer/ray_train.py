"""Ray Train driver for the ``transformer`` family: Ray Data preprocessing, DDP workers, checkpoints.

``tagops train --model transformer [--num-workers N --cpus-per-worker C --gpus-per-worker G]`` reaches
this module through :func:`tagops.workloads.train.fit_stage`. What happens:

1. Ray Data tokenises the texts with ``map_batches`` over an actor pool; each actor loads the tokenizer
   once (:class:`TokenizeBatches`). The result is materialised before training starts, so tokenising
   never competes with the training workers for the CPUs they reserved.
2. A ``TorchTrainer`` runs :func:`~tagops.models.transformer.ray_worker.train_loop_per_worker` on
   ``num_workers`` workers (DDP; on a GPU when the scaling config asks for one).
3. After every epoch the workers report metrics and rank 0 a checkpoint. Ray keeps the best checkpoint
   by validation F1 (and the latest); training stops early after ``patience`` epochs without
   improvement.
4. A run that was killed is continued by running it again under the same name and storage folder: Ray
   restores its checkpoint manager and every worker resumes from the latest checkpoint, replaying the
   same per-epoch seeds (``tagops train --resume RUN``).

The Ray session comes from :func:`tagops.runtime.ray_session` (the embedded cluster, or ``RAY_ADDRESS``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagops import LABELS
from tagops.config import TransformerParams
from tagops.models.transformer.model import TransformerModel
from tagops.models.transformer.network import TextEncoder, resolve_encoder
from tagops.models.transformer.progress import current_listener, notify
from tagops.models.transformer.ray_worker import SCORE, Tracking, train_loop_per_worker
from tagops.models.transformer.training import epoch_summary

if TYPE_CHECKING:
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


#: Rows per Ray Data tokenising batch.
TOKENIZE_BATCH_ROWS = 256


@dataclass(frozen=True)
class WorkerPlan:
    """The resources a training run asks for, resolved against the cluster."""

    num_workers: int
    cpus_per_worker: int
    gpus_per_worker: float

    @property
    def use_gpu(self) -> bool:
        """Whether the workers train on a GPU."""
        return self.gpus_per_worker > 0


def plan_workers(params: TransformerParams, resources: dict[str, Any]) -> WorkerPlan:
    """Resolve CPUs and GPUs per worker from the config and the cluster's resources.

    CPUs default to an equal share of the cluster; GPUs default to one per worker when the cluster has
    any. Asking for more than the cluster holds fails here with a message instead of hanging in Ray.
    """
    cluster_cpus = float(resources.get("CPU", 1.0))
    cluster_gpus = float(resources.get("GPU", 0.0))
    cpus = params.cpus_per_worker or max(1, math.floor(cluster_cpus / params.num_workers))
    if params.gpus_per_worker is None:
        gpus = 1.0 if cluster_gpus >= params.num_workers else 0.0
    else:
        gpus = params.gpus_per_worker
    if cpus * params.num_workers > cluster_cpus:
        raise ValueError(
            f"{params.num_workers} workers x {cpus} CPUs need {cpus * params.num_workers} CPUs; "
            f"the Ray cluster has {cluster_cpus:g}"
        )
    if gpus * params.num_workers > cluster_gpus:
        raise ValueError(
            f"{params.num_workers} workers x {gpus:g} GPUs need {gpus * params.num_workers:g} GPUs; "
            f"the Ray cluster has {cluster_gpus:g}"
        )
    return WorkerPlan(params.num_workers, cpus, gpus)


class TokenizeBatches:
    """Ray Data ``map_batches`` callable: each actor loads the tokenizer once, then tokenises batches."""

    def __init__(self, source: str, params: dict[str, Any]) -> None:
        self.encoder = TextEncoder.from_source(source, params)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``text``, ``label``, ``split`` in; ``input_ids``, ``attention_mask``, ``label``, ``split`` out."""
        return {**self.encoder(batch), "split": batch["split"]}


def quiet_ray_data() -> None:
    """No per-dataset chatter on the console (Ray Data logs each execution at INFO by default)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def tokenize_splits(
    splits: dict[str, tuple[Sequence[str], Sequence[str]]], *, source: str, params: TransformerParams
) -> dict[str, Any]:
    """Materialised Ray Datasets of token arrays and label ids, one per split.

    All splits go through one ``map_batches`` over an actor pool (one tokenizer load in all), then are
    separated again by a split column; materialising means training never waits on tokenising.
    """
    import pandas as pd
    import ray.data
    from ray.data import ActorPoolStrategy

    names = list(splits)
    frames = [
        pd.DataFrame(
            {
                "text": list(texts),
                "label": np.array([LABELS.index(label) for label in labels], dtype=np.int64),
                "split": np.full(len(texts), i, dtype=np.int64),
            }
        )
        for i, (texts, labels) in enumerate(splits.values())
    ]
    tokenized = (
        ray.data.from_pandas(pd.concat(frames, ignore_index=True))
        .map_batches(
            TokenizeBatches,
            fn_constructor_kwargs={"source": source, "params": params.model_dump(mode="json")},
            compute=ActorPoolStrategy(size=1),
            batch_size=TOKENIZE_BATCH_ROWS,
            batch_format="numpy",
            num_cpus=1,
        )
        .materialize()
    )
    return {
        name: tokenized.filter(expr=f"split == {i}").drop_columns(["split"]).materialize()
        for i, name in enumerate(names)
    }


# --------------------------------------------------------------------------------------- progress
class EpochMailbox:
    """A Ray actor: the epochs the workers reported that the driver has not logged yet."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []

    def put(self, metrics: dict[str, Any]) -> None:
        """Keep one epoch's metrics (rank 0's report)."""
        self.pending.append(metrics)

    def take(self) -> list[dict[str, Any]]:
        """The epochs kept since the last call, oldest first."""
        taken, self.pending = self.pending, []
        return taken


@cache
def forward_epochs_class() -> type[Any]:
    """The Ray Train callback class, defined on first use so that importing this module imports no Ray."""
    import ray.train

    class ForwardEpochs(ray.train.UserCallback):  # type: ignore[misc]
        """Runs in Ray Train's controller: sends rank 0's report of each epoch to an :class:`EpochMailbox`."""

        def __init__(self, mailbox: Any) -> None:
            self.mailbox = mailbox

        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            if metrics:  # fire and forget: the controller's event loop must not wait on the driver
                self.mailbox.put.remote(dict(metrics[0]))

    return ForwardEpochs


class EpochLog:
    """Logs one line per epoch in this (the driver) process as Ray Train's workers report the epochs.

    The workers report to Ray Train's controller, another process; a callback there forwards each epoch
    to an :class:`EpochMailbox` actor, which a thread here empties every ``poll_s`` seconds. Used as a
    context manager around ``trainer.fit()``; :meth:`catch_up` logs any epoch whose report did not
    arrive before the run ended.
    """

    def __init__(self, epochs: int, *, poll_s: float = 0.5) -> None:
        import ray

        self.epochs = epochs
        self.poll_s = poll_s
        self.mailbox: Any = ray.remote(num_cpus=0)(EpochMailbox).remote()
        self.logged: set[int] = set()
        self.listener = current_listener()  # the polling thread does not inherit the caller's context
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="tagops-epoch-log", daemon=True)

    def callbacks(self) -> list[Any]:
        """The callbacks to pass to Ray Train's ``RunConfig(callbacks=...)``.

        None where Ray Train runs without its controller (``RAY_TRAIN_V2_ENABLED=0``, no
        ``UserCallback``): every epoch is then logged by :meth:`catch_up` when the run ends.
        """
        import ray.train

        if not hasattr(ray.train, "UserCallback"):
            return []
        return [forward_epochs_class()(self.mailbox)]

    def __enter__(self) -> EpochLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import ray

        self._stop.set()
        self._thread.join()
        self._log(self._take())  # epochs reported just before the run ended
        try:
            ray.kill(self.mailbox)
        except Exception as error:  # never hide the run's own outcome behind the mailbox's
            logger.debug("could not stop the epoch mailbox: %s", error)

    def catch_up(self, history: Sequence[dict[str, float]], *, after: int = 0) -> None:
        """Log the epochs of ``history`` (the run's final state) later than ``after`` not logged yet."""
        self._log([entry for entry in history if int(entry["epoch"]) > after])

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._log(self._take())

    def _take(self) -> list[dict[str, Any]]:
        import ray

        try:
            taken: list[dict[str, Any]] = ray.get(self.mailbox.take.remote(), timeout=30)
        except Exception as error:  # progress lines must never fail a training run
            logger.debug("no epoch reports this time: %s", error)
            return []
        return taken

    def _log(self, reports: Sequence[dict[str, Any]]) -> None:
        for metrics in reports:
            epoch = int(metrics["epoch"])
            if epoch not in self.logged:
                self.logged.add(epoch)
                logger.info("%s", epoch_summary(epoch, self.epochs, metrics))
                notify(self.listener, epoch, self.epochs)


# --------------------------------------------------------------------------------------- the driver
def fit_transformer(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    params: TransformerParams,
    seed: int,
    settings: Settings,
    storage_dir: Path,
    name: str,
    val_texts: Sequence[str] | None = None,
    val_labels: Sequence[str] | None = None,
    tracking: Tracking | None = None,
) -> TransformerModel:
    """Train with Ray Train and return the best model (by validation F1; the last without validation).

    ``storage_dir / name`` holds Ray's checkpoints; calling again with the same pair resumes from the
    latest checkpoint instead of starting over.
    """
    from tagops.models.base import check_labels
    from tagops.runtime import ray_session

    check_labels(labels)
    if params.other_topics:
        from tagops.data.augment import with_other_topics_texts

        texts, labels = with_other_topics_texts(texts, labels)
    has_val = val_texts is not None and val_labels is not None and len(val_texts) > 0
    source = resolve_encoder(params.encoder)
    storage_dir.mkdir(parents=True, exist_ok=True)
    with ray_session(settings) as resources:
        import ray.train
        from ray.train.torch import TorchTrainer

        plan = plan_workers(params, resources)
        logger.info(
            "Ray Train: %d worker(s) x %d CPU, %g GPU; checkpoints in %s",
            plan.num_workers,
            plan.cpus_per_worker,
            plan.gpus_per_worker,
            storage_dir / name,
        )
        quiet_ray_data()
        splits = {"train": (texts, labels)}
        if has_val:
            assert val_texts is not None and val_labels is not None
            splits["val"] = (val_texts, val_labels)
        started = time.perf_counter()
        datasets = tokenize_splits(splits, source=source, params=params)
        logger.info(
            "Ray Data tokenised %s in %.1fs",
            {k: len(v[0]) for k, v in splits.items()},
            time.perf_counter() - started,
        )
        checkpoint_config = (
            ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=SCORE, checkpoint_score_order="max"
            )
            if has_val
            else ray.train.CheckpointConfig(num_to_keep=1)
        )
        resources_per_worker: dict[str, float] = {"CPU": float(plan.cpus_per_worker)}
        if plan.use_gpu:
            resources_per_worker["GPU"] = plan.gpus_per_worker
        loop: Any = train_loop_per_worker  # Ray's hint says the loop returns None; rank 0's value is kept
        progress = EpochLog(params.epochs)
        trainer = TorchTrainer(
            loop,
            train_loop_config={
                "params": params.model_dump(mode="json"),
                "seed": seed,
                "labels": list(LABELS),
                "source": source,
                "cpus_per_worker": plan.cpus_per_worker,
                "train_rows": len(texts),
                "train_label_ids": [LABELS.index(label) for label in labels],
                "has_val": has_val,
                "tracking": vars(tracking) if tracking else None,
            },
            scaling_config=ray.train.ScalingConfig(
                num_workers=plan.num_workers,
                use_gpu=plan.use_gpu,
                resources_per_worker=resources_per_worker,
            ),
            run_config=ray.train.RunConfig(
                name=name,
                storage_path=str(storage_dir),
                checkpoint_config=checkpoint_config,
                failure_config=ray.train.FailureConfig(max_failures=0),
                callbacks=progress.callbacks(),
            ),
            datasets=datasets,
            dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        )
        started = time.perf_counter()
        with progress:
            result = trainer.fit()
        final = getattr(result, "return_value", None) or {}
        progress.catch_up(final.get("history", []), after=int(final.get("resumed_from_epoch", 0)))
        logger.info("Ray Train finished in %.1fs", time.perf_counter() - started)
        best = result.get_best_checkpoint(SCORE, "max") if has_val else result.checkpoint
        if best is None:
            raise RuntimeError(f"Ray Train run {storage_dir / name} produced no checkpoint")
        with best.as_directory() as folder:
            model = TransformerModel.load(Path(folder))
    # The best checkpoint's history stops at its epoch; the run's final state has every epoch.
    model.training_ = {
        **model.training_,
        **final,
        "workers": plan.num_workers,
    }
    return model
