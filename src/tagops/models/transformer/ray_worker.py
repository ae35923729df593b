"""The Ray Train worker of the ``transformer`` family: restore, train epoch by epoch, checkpoint, report.

:func:`train_loop_per_worker` runs on every worker of the ``TorchTrainer`` that
:func:`~tagops.models.transformer.ray_train.fit_transformer` starts. Every worker validates the config it
receives again, seeds itself, sizes torch's threads to the CPUs it reserved, and streams its shard of the
training data. After every epoch the workers report metrics; rank 0 also writes a checkpoint (a complete
model folder plus optimizer, scheduler and progress state) and logs the metrics to MLflow when a run is
given. A worker that finds a checkpoint resumes from it, replaying the same per-epoch seeds.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tagops.config import TransformerParams
from tagops.models.transformer.model import BUNDLED_ENCODER, WEIGHTS_FILE, TransformerModel
from tagops.models.transformer.network import (
    PREDICT_BATCH_SIZE,
    array_batches,
    load_pretrained_classifier,
    load_tokenizer,
    pool_arrays,
    predict_logits,
    quiet_transformers,
)
from tagops.models.transformer.training import (
    TrainState,
    build_loss,
    build_optimizer,
    checkpoint_score,
    epoch_order,
    epoch_seed,
    run_epochs,
    score_epoch,
    seed_everything,
    steps_per_epoch,
)

logger = logging.getLogger(__name__)


STATE_FILE = "train_state.json"
#: The metric Ray keeps the best checkpoint by.
SCORE = "checkpoint_score"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
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

    def after_epoch(state: TrainState, metrics: dict[str, float], improved: bool) -> None:
        _report(model, tokenizer, params, labels, state, metrics, optimizer, scheduler, rank=rank, seed=seed)
        if rank == 0 and tracking is not None:
            _log_epoch(tracking, metrics, state.epoch)

    run_epochs(
        model,
        train_batches,
        validate=validate if val_shard is not None else None,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=loss_fn,
        device=device,
        params=params,
        seed=seed,
        state=state,
        rank=rank,
        record_lr=True,
        after_epoch=after_epoch,
    )
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
    from tagops.registry.runs import log_to_run

    try:
        log_to_run(
            tracking.tracking_uri,
            tracking.run_id,
            metrics={f"{tracking.prefix}{k}": v for k, v in metrics.items()},
            step=epoch,
        )
    except Exception as error:  # a flaky tracking server must not kill a long training run
        logger.warning("could not log epoch %d to MLflow: %s", epoch, error)
