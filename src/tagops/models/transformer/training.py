"""Training primitives of the transformer family: optimizer, loss, epoch order, one epoch, bookkeeping.

Training is single-label cross-entropy (optional label smoothing and balanced class weights), AdamW
with linear warm-up then linear decay, gradient clipping and early stopping on validation F1. The
in-process fit (:mod:`~tagops.models.transformer.model`) and the Ray Train worker
(:mod:`~tagops.models.transformer.ray_worker`) run the same epoch loop, :func:`run_epochs`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tagops.config import TransformerParams
from tagops.models.transformer.network import move_batch, trim_batch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for this process."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch on one worker: resuming at epoch ``e`` replays exactly what ``e`` would do."""
    return seed + 1000 * epoch + rank


def build_optimizer(module: Any, params: TransformerParams, total_steps: int) -> tuple[Any, Any]:
    """AdamW (no decay on biases and norms; the new head may learn faster) and warm-up-then-linear-decay."""
    import torch

    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        is_head = name.split(".")[-2:-1] == ["head"]  # "head.weight", or "module.head.weight" under DDP
        no_decay = parameter.ndim < 2
        groups.setdefault((is_head, no_decay), []).append(parameter)
    param_groups = [
        {
            "params": tensors,
            "lr": (params.head_lr or params.lr) if is_head else params.lr,
            "weight_decay": 0.0 if no_decay else params.weight_decay,
        }
        for (is_head, no_decay), tensors in sorted(groups.items())
    ]
    optimizer = torch.optim.AdamW(param_groups, lr=params.lr)
    warmup = int(params.warmup_ratio * total_steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return optimizer, scheduler


def build_loss(params: TransformerParams, label_ids: Sequence[int] | np.ndarray, num_labels: int) -> Any:
    """Single-label cross-entropy, with balanced class weights and label smoothing when configured."""
    import torch

    weight = None
    if params.class_weights:
        counts = np.bincount(np.asarray(label_ids, dtype=np.int64), minlength=num_labels).astype(np.float64)
        present = counts > 0
        values = np.zeros(num_labels)
        values[present] = counts.sum() / (present.sum() * counts[present])
        weight = torch.tensor(values, dtype=torch.float32)
    return torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=params.label_smoothing)


def steps_per_epoch(rows: int, batch_size: int) -> int:
    """Optimizer steps in one epoch (the last, partial batch counts)."""
    return max(1, math.ceil(rows / batch_size))


# ------------------------------------------------------------------------------------------ epochs
@dataclass
class TrainState:
    """Progress of a training run, JSON-ready: what a checkpoint needs besides the tensors."""

    epoch: int = 0
    best_f1: float = -1.0
    best_score: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``model.json`` and checkpoints."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        """Inverse of :meth:`to_json`."""
        return cls(**data)


def train_epoch(
    module: Any,
    batches: Iterable[dict[str, Any]],
    *,
    optimizer: Any,
    scheduler: Any,
    loss_fn: Any,
    device: Any,
    max_grad_norm: float | None,
) -> float:
    """One pass over ``batches`` (token arrays, or ``pooled`` embeddings, with ``label``); mean loss."""
    import torch

    module.train()
    total, count = 0.0, 0
    for raw in batches:
        batch = move_batch(raw, device)
        if "pooled" in batch:  # a frozen encoder's cached embeddings: only the head trains
            logits = module(pooled=batch["pooled"])
        else:
            batch = trim_batch(batch)
            logits = module(batch["input_ids"], batch["attention_mask"])
        loss = loss_fn(logits, batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        rows = int(batch["label"].shape[0])
        total += float(loss.detach()) * rows
        count += rows
    return total / max(count, 1)


def score_epoch(logits: np.ndarray, label_ids: np.ndarray, num_labels: int) -> dict[str, float]:
    """Validation weighted F1, accuracy and (unweighted) cross-entropy from logits."""
    from sklearn.metrics import f1_score

    shifted = logits - logits.max(axis=1, keepdims=True)
    log_proba = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    predicted = log_proba.argmax(axis=1)
    return {
        "val_f1": float(f1_score(label_ids, predicted, average="weighted", zero_division=0)),
        "val_accuracy": float((predicted == label_ids).mean()),
        "val_loss": float(-log_proba[np.arange(len(label_ids)), label_ids].mean()),
    }


def checkpoint_score(metrics: dict[str, float]) -> float:
    """How epochs rank: validation F1, and on a tie (F1 moves in steps of 1/rows) the lower validation loss.

    Ray Train ranks its checkpoints by this same number, so the checkpoint it keeps is the epoch the
    early-stopping bookkeeping calls best.
    """
    return metrics["val_f1"] - 1e-6 * min(metrics.get("val_loss", 0.0), 100.0)


def update_state(state: TrainState, metrics: dict[str, float], patience: int | None) -> bool:
    """Record one finished epoch; returns whether it is the best so far (early-stopping bookkeeping)."""
    state.epoch += 1
    # Timings stay out of the history: it is saved in model.json, whose content identifies the model.
    state.history.append(
        {"epoch": float(state.epoch), **{k: v for k, v in metrics.items() if k != "epoch_seconds"}}
    )
    if "val_f1" not in metrics:
        state.best_epoch = state.epoch
        return True
    improved = checkpoint_score(metrics) > state.best_score
    if improved:
        state.best_score = checkpoint_score(metrics)
        state.best_f1, state.best_epoch, state.bad_epochs = metrics["val_f1"], state.epoch, 0
    else:
        state.bad_epochs += 1
        state.stopped_early = patience is not None and state.bad_epochs >= patience
    return improved


#: Batches of one length bucket: shuffled rows are sorted by length within windows of this many batches.
BUCKET_BATCHES = 8


def epoch_order(arrays: dict[str, np.ndarray], batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """A random epoch order whose batches hold texts of similar length (little padding to compute).

    Rows are shuffled, sorted by token count within windows of :data:`BUCKET_BATCHES` batches, cut into
    batches, and the batches shuffled. The padding of a batch is trimmed to its longest text, so on CPU
    an epoch computes far less than with plain shuffling. Cached embeddings (a frozen encoder) have no
    length, and are simply shuffled.
    """
    rows = len(next(iter(arrays.values())))
    order = rng.permutation(rows)
    if "attention_mask" not in arrays:
        return order
    lengths = arrays["attention_mask"].sum(axis=1)
    window = batch_size * BUCKET_BATCHES
    for start in range(0, rows, window):
        chunk = order[start : start + window]
        order[start : start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, rows, batch_size)]
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))])


#: What the epoch loop calls after each epoch: the state (already updated), the epoch's metrics, and
#: whether the epoch is the best so far.
AfterEpoch = Callable[[TrainState, dict[str, float], bool], None]


def run_epochs(
    module: Any,
    batches: Callable[[int], Iterable[dict[str, Any]]],
    *,
    validate: Callable[[], dict[str, float]] | None,
    optimizer: Any,
    scheduler: Any,
    loss_fn: Any,
    device: Any,
    params: TransformerParams,
    seed: int,
    state: TrainState,
    rank: int = 0,
    record_lr: bool = False,
    after_epoch: AfterEpoch | None = None,
) -> TrainState:
    """Train from epoch ``state.epoch`` until ``params.epochs`` or early stopping; the one epoch loop.

    Each epoch seeds torch with :func:`epoch_seed` (dropout draws the same numbers whether the run went
    straight through or resumed at that epoch), trains one pass over ``batches(epoch)``, validates when
    ``validate`` is given, and records the epoch in ``state``. ``record_lr`` adds the learning rate the
    epoch ended on to its metrics.

    Args:
        module: The network (or its DDP wrapper), already on ``device``.
        batches: The training batches of one epoch, by epoch number (from 0).
        validate: Validation metrics of the network as it is now (``val_f1`` among them), or ``None``.
        optimizer: The optimizer from :func:`build_optimizer`.
        scheduler: Its learning-rate scheduler, stepped once per batch.
        loss_fn: The loss from :func:`build_loss`.
        device: Where the batches go.
        params: Epoch count, patience and gradient clipping.
        seed: The run's seed.
        state: Progress so far (a fresh :class:`TrainState`, or one restored from a checkpoint).
        rank: This worker's rank (0 in process).
        record_lr: Whether to record the learning rate in each epoch's metrics.
        after_epoch: Called after each epoch with the state, the metrics and whether it is the best.

    Returns:
        ``state``, updated.

    """
    import torch

    while state.epoch < params.epochs and not state.stopped_early:
        started = time.perf_counter()
        epoch = state.epoch
        torch.manual_seed(epoch_seed(seed, epoch, rank))
        loss = train_epoch(
            module,
            batches(epoch),
            optimizer=optimizer,
            scheduler=scheduler,
            loss_fn=loss_fn,
            device=device,
            max_grad_norm=params.max_grad_norm,
        )
        metrics: dict[str, float] = {"train_loss": loss}
        if record_lr:
            metrics["lr"] = float(scheduler.get_last_lr()[0])
        if validate is not None:
            metrics.update(validate())
        metrics["epoch_seconds"] = time.perf_counter() - started
        improved = update_state(state, metrics, params.patience)
        if after_epoch is not None:
            after_epoch(state, metrics, improved)
    return state


def epoch_summary(epoch: int, epochs: int, metrics: Mapping[str, float]) -> str:
    """The console line of a finished epoch, e.g. ``epoch 3/5: train loss 0.412, validation F1 0.942``.

    Args:
        epoch: The epoch's number, from 1.
        epochs: The most epochs the run trains.
        metrics: The epoch's metrics (``train_loss``; ``val_f1`` and ``epoch_seconds`` when known).

    """
    line = f"epoch {epoch}/{epochs}: train loss {metrics['train_loss']:.3f}"
    if "val_f1" in metrics:
        line += f", validation F1 {metrics['val_f1']:.3f}"
    if "epoch_seconds" in metrics:
        line += f" ({metrics['epoch_seconds']:.1f} s)"
    return line
