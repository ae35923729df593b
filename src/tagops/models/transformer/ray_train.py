"""Ray Train workload for the ``transformer`` family: Ray Data preprocessing, DDP workers, checkpoints.

``tagops train --model transformer [--num-workers N --cpus-per-worker C --gpus-per-worker G]`` reaches
this module through :func:`tagops.workloads.train.fit_stage`. What happens:

1. Ray Data tokenises the texts with ``map_batches`` over an actor pool; each actor loads the tokenizer
   once (:class:`TokenizeBatches`). The result is materialised before training starts, so tokenising
   never competes with the training workers for the CPUs they reserved.
2. A ``TorchTrainer`` runs :func:`train_loop_per_worker` on ``num_workers`` workers (DDP; on a GPU
   when the scaling config asks for one). Every worker validates the config it receives again, seeds
   itself, sizes torch's threads to the CPUs it reserved, and streams its shard of the training data.
3. After every epoch the workers report metrics; rank 0 also writes a checkpoint (a complete model folder
   plus optimizer, scheduler and progress state) and logs the metrics to MLflow when a run is given.
   Ray keeps the best checkpoint by validation F1 (and the latest); training stops early after
   ``patience`` epochs without improvement.
4. A run that was killed is continued by running it again under the same name and storage folder: Ray
   restores its checkpoint manager and every worker resumes from the latest checkpoint, replaying the
   same per-epoch seeds (``tagops train --resume RUN``).

The Ray session comes from :func:`tagops.runtime.ray_session` (the embedded cluster, or ``RAY_ADDRESS``).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagops import LABELS
from tagops.config import TransformerParams
from tagops.models.transformer.model import BUNDLED_ENCODER, WEIGHTS_FILE, TransformerModel
from tagops.models.transformer.network import (
    PREDICT_BATCH_SIZE,
    TextEncoder,
    array_batches,
    load_pretrained_classifier,
    load_tokenizer,
    pool_arrays,
    predict_logits,
    quiet_transformers,
    resolve_encoder,
)
from tagops.models.transformer.training import (
    TrainState,
    build_loss,
    build_optimizer,
    checkpoint_score,
    epoch_order,
    epoch_seed,
    score_epoch,
    seed_everything,
    steps_per_epoch,
    train_epoch,
    update_state,
)

if TYPE_CHECKING:
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

STATE_FILE = "train_state.json"
#: The metric Ray keeps the best checkpoint by.
SCORE = "checkpoint_score"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
#: Rows per Ray Data tokenising batch.
TOKENIZE_BATCH_ROWS = 256
#: A worker holds a training shard of up to this many rows in memory and batches it by length; a larger
#: shard is streamed from Ray Data every epoch (with a local shuffle buffer).
IN_MEMORY_SHARD_ROWS = 50_000


@dataclass(frozen=True)
class Tracking:
    """Where rank 0 logs per-epoch metrics: an MLflow run, by id, on a tracking server."""

    tracking_uri: str
    run_id: str
    #: Metric name prefix, so that a validation fit and the refit after it chart separately.
    prefix: str = "epoch."


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


# --------------------------------------------------------------------------------------- the worker
def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """One Ray Train worker: build, restore, train epoch by epoch, validate, checkpoint, report."""
    import ray.train
    import ray.train.torch
    import torch

    params = TransformerParams.model_validate(config["params"])
    seed = int(config["seed"])
    labels = tuple(config["labels"])
    tracking = Tracking(**config["tracking"]) if config.get("tracking") else None
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(int(config["cpus_per_worker"]))
    seed_everything(seed + rank)
    quiet_transformers()

    source = str(config["source"])
    tokenizer = load_tokenizer(source)  # once per worker: only rank 0 needs it, to write checkpoints
    module = load_pretrained_classifier(source, params, len(labels))
    state = TrainState()
    checkpoint = ray.train.get_checkpoint()
    optimizer_state = scheduler_state = None
    if checkpoint is not None:
        from safetensors.torch import load_file

        with checkpoint.as_directory() as folder:
            module.load_state_dict(load_file(str(Path(folder) / WEIGHTS_FILE)), strict=True)
            state = TrainState.from_json(json.loads((Path(folder) / STATE_FILE).read_text()))
            optimizer_state = torch.load(Path(folder) / OPTIMIZER_FILE, weights_only=True)
            scheduler_state = torch.load(Path(folder) / SCHEDULER_FILE, weights_only=True)
        logger.info("rank %d resumes after epoch %d", rank, state.epoch)

    resumed_from_epoch = state.epoch
    model = ray.train.torch.prepare_model(module)
    device = ray.train.torch.get_device()
    batch_size = max(1, params.batch_size // world)
    train_rows = int(config["train_rows"])
    total_steps = params.epochs * steps_per_epoch(train_rows // world, batch_size)
    optimizer, scheduler = build_optimizer(model, params, total_steps)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(scheduler_state)
    loss_fn = build_loss(params, config["train_label_ids"], len(labels)).to(device)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val") if config["has_val"] else None
    cached_train = cached_val = None
    if params.freeze_encoder:  # encode once; the epochs then train the head on cached embeddings
        unwrapped = model.module if hasattr(model, "module") else model
        numpy_batches = {"batch_size": PREDICT_BATCH_SIZE, "batch_format": "numpy"}
        cached_train = pool_arrays(unwrapped, train_shard.iter_batches(**numpy_batches), device)
        if val_shard is not None:
            cached_val = pool_arrays(unwrapped, val_shard.iter_batches(**numpy_batches), device)

    in_memory = None
    if cached_train is None and train_rows // world <= IN_MEMORY_SHARD_ROWS:
        # A small shard is read once and batched by length (far less padding than random batches).
        parts = list(train_shard.iter_batches(batch_size=4096, batch_format="numpy"))
        in_memory = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}

    def train_batches(epoch: int) -> Any:
        if in_memory is not None:
            rng = np.random.default_rng(epoch_seed(seed, epoch))
            order = epoch_order(in_memory, batch_size, rng)
            yield from array_batches(in_memory, batch_size, order=order)
            return
        if cached_train is None:
            yield from train_shard.iter_torch_batches(
                batch_size=batch_size,
                local_shuffle_buffer_size=max(train_rows, batch_size),
                local_shuffle_seed=epoch_seed(seed, epoch),
                device=device,
            )
            return
        rows = len(cached_train["label"])
        shuffled = torch.randperm(rows, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        for begin in range(0, rows, batch_size):
            take = shuffled[begin : begin + batch_size].to(device)
            yield {"pooled": cached_train["pooled"][take], "label": cached_train["label"][take]}

    def validate() -> dict[str, float]:
        # The whole validation set on every worker: the same numbers, so the same early-stopping decision.
        if cached_val is not None:
            logits = predict_logits(model, [{"pooled": cached_val["pooled"]}], device)
            return score_epoch(logits, cached_val["label"].cpu().numpy(), len(labels))
        assert val_shard is not None
        label_parts: list[np.ndarray] = []

        def batches() -> Any:
            for batch in val_shard.iter_batches(batch_size=PREDICT_BATCH_SIZE, batch_format="numpy"):
                label_parts.append(batch["label"])
                yield batch

        logits = predict_logits(model, batches(), device)
        return score_epoch(logits, np.concatenate(label_parts), len(labels))

    while state.epoch < params.epochs and not state.stopped_early:
        started = time.perf_counter()
        epoch = state.epoch
        torch.manual_seed(epoch_seed(seed, epoch, rank))
        loss = train_epoch(
            model,
            train_batches(epoch),
            optimizer=optimizer,
            scheduler=scheduler,
            loss_fn=loss_fn,
            device=device,
            max_grad_norm=params.max_grad_norm,
        )
        metrics: dict[str, float] = {"train_loss": loss, "lr": float(scheduler.get_last_lr()[0])}
        if val_shard is not None:
            metrics.update(validate())
        metrics["epoch_seconds"] = time.perf_counter() - started
        update_state(state, metrics, params.patience)
        _report(model, tokenizer, params, labels, state, metrics, optimizer, scheduler, rank=rank, seed=seed)
        if rank == 0 and tracking is not None:
            _log_epoch(tracking, metrics, state.epoch)
    return {**state.to_json(), "device": str(device), "resumed_from_epoch": resumed_from_epoch}


def _report(
    model: Any,
    tokenizer: Any,
    params: TransformerParams,
    labels: tuple[str, ...],
    state: Any,
    metrics: dict[str, float],
    optimizer: Any,
    scheduler: Any,
    *,
    rank: int,
    seed: int,
) -> None:
    """Report one epoch; rank 0 attaches a checkpoint that is a complete, loadable model folder."""
    import ray.train
    import torch

    reported = {**metrics, "epoch": state.epoch}
    if "val_f1" in metrics:
        # Ray keeps the best checkpoint by the same ranking as the early-stopping bookkeeping.
        reported[SCORE] = checkpoint_score(metrics)
    if rank != 0:
        ray.train.report(reported, checkpoint=None)
        return
    unwrapped = model.module if hasattr(model, "module") else model
    with tempfile.TemporaryDirectory(prefix="tagops-ckpt-") as folder:
        training = {"seed": seed, "encoder": params.encoder or BUNDLED_ENCODER, **state.to_json()}
        snapshot = TransformerModel(params)
        snapshot.labels = labels
        snapshot.module_, snapshot.tokenizer_, snapshot.training_ = unwrapped, tokenizer, training
        snapshot.save(Path(folder))
        (Path(folder) / STATE_FILE).write_text(json.dumps(state.to_json()), encoding="utf-8")
        torch.save(optimizer.state_dict(), Path(folder) / OPTIMIZER_FILE)
        torch.save(scheduler.state_dict(), Path(folder) / SCHEDULER_FILE)
        ray.train.report(
            reported,
            checkpoint=ray.train.Checkpoint.from_directory(folder),
            checkpoint_dir_name=f"checkpoint_epoch_{state.epoch:03d}",
        )


def _log_epoch(tracking: Tracking, metrics: dict[str, float], epoch: int) -> None:
    """Per-epoch metrics to MLflow; tracking trouble is logged, never fatal to training."""
    from tagops.registry.client import log_to_run

    try:
        log_to_run(
            tracking.tracking_uri,
            tracking.run_id,
            metrics={f"{tracking.prefix}{k}": v for k, v in metrics.items()},
            step=epoch,
        )
    except Exception as error:  # a flaky tracking server must not kill a long training run
        logger.warning("could not log epoch %d to MLflow: %s", epoch, error)


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
            ),
            datasets=datasets,
            dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
        )
        started = time.perf_counter()
        result = trainer.fit()
        logger.info("Ray Train finished in %.1fs", time.perf_counter() - started)
        best = result.get_best_checkpoint(SCORE, "max") if has_val else result.checkpoint
        if best is None:
            raise RuntimeError(f"Ray Train run {storage_dir / name} produced no checkpoint")
        with best.as_directory() as folder:
            model = TransformerModel.load(Path(folder))
    # The best checkpoint's history stops at its epoch; the run's final state has every epoch.
    model.training_ = {
        **model.training_,
        **(getattr(result, "return_value", None) or {}),
        "workers": plan.num_workers,
    }
    return model
