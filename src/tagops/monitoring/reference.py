"""Reference statistics: what a model's inputs and outputs looked like when it was registered.

Pure functions over plain data (texts, tags, confidences). Registration stores the result as
``reference_stats.json`` with the model's MLflow run; ``tagops monitor`` computes the same features for
a window of live traffic (:func:`window_stats`) and compares the two (:mod:`tagops.monitoring.drift`).

Token counts and the vocabulary use :func:`tagops.data.clean.clean_text` (case folded, URLs removed,
stop words kept), so "token" means the same thing for every model family.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tagops.data.clean import clean_text

if TYPE_CHECKING:
    from tagops.config import ReferenceConfig

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class Embedder(Protocol):
    """Turns texts into fixed-width sentence vectors; ``name`` is stored with the reference."""

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text."""
        ...


# ------------------------------------------------------------------------------------ text features
def tokenize(text: str) -> list[str]:
    """Word tokens of a model input (case folded, URLs and punctuation removed, stop words kept)."""
    return clean_text(text, lower=True, remove_urls=True).split()


def token_counts(texts: Sequence[str]) -> np.ndarray:
    """Tokens per text."""
    return np.array([len(tokenize(t)) for t in texts], dtype=np.int64)


def bucket_counts(values: np.ndarray | Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts per bucket: ``value <= edges[0]``, ``<= edges[1]``, …, and one open bucket above the last."""
    index = np.searchsorted(np.asarray(edges, dtype=float), np.asarray(values, dtype=float), side="left")
    return [int(c) for c in np.bincount(index, minlength=len(edges) + 1)]


def build_vocabulary(texts: Sequence[str]) -> list[str]:
    """Every token of the training texts, sorted (stored as is: readable, and small for this data)."""
    vocabulary: set[str] = set()
    for text in texts:
        vocabulary.update(tokenize(text))
    return sorted(vocabulary)


def oov_counts(texts: Sequence[str], vocabulary: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
    """Unknown tokens and all tokens, per text."""
    unknown, total = [], []
    for text in texts:
        tokens = tokenize(text)
        total.append(len(tokens))
        unknown.append(sum(token not in vocabulary for token in tokens))
    return np.array(unknown, dtype=np.int64), np.array(total, dtype=np.int64)


def oov_rates(unknown: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Per-text share of unknown tokens (0 for an empty text)."""
    rates: np.ndarray = np.divide(unknown, total, out=np.zeros(len(total), dtype=float), where=total > 0)
    return rates


def summarize_values(values: np.ndarray) -> dict[str, Any]:
    """Mean and quantiles of a numeric sample, for reports and MLflow."""
    if len(values) == 0:
        return {"mean": None, "quantiles": {}}
    return {
        "mean": float(np.mean(values)),
        "quantiles": {str(q): float(np.quantile(values, q)) for q in QUANTILES},
    }


def _sample(values: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= size:
        return values
    return values[np.sort(rng.choice(len(values), size=size, replace=False))]


# ---------------------------------------------------------------------------------------- embedders
class HashingEmbedder:
    """A stateless embedder: hashed bag of words and bigrams, randomly projected to ``dims`` and normalised.

    The cheap fallback for tests and for machines without torch. Unlike TF-IDF + SVD it needs no fitted
    state: the same name, dims and seed embed a window exactly as they embedded the reference, so
    nothing but its name has to be stored.
    """

    def __init__(self, dims: int = 64, n_features: int = 2**14, seed: int = 0) -> None:
        self.dims = dims
        self.n_features = n_features
        self.seed = seed
        self.name = f"hashing-{dims}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length rows of the projected hashed counts."""
        from sklearn.feature_extraction.text import HashingVectorizer

        vectorizer = HashingVectorizer(
            n_features=self.n_features,
            ngram_range=(1, 2),
            alternate_sign=False,
            norm="l2",
            preprocessor=lambda text: " ".join(tokenize(text)),
        )
        counts = vectorizer.transform(list(texts))
        projection = np.random.default_rng(self.seed).standard_normal((self.n_features, self.dims))
        dense = np.asarray(counts @ projection, dtype=float)
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        unit: np.ndarray = np.divide(dense, norms, out=np.zeros_like(dense), where=norms > 0)
        return unit


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (bundled, offline) with mean pooling: the sentence embedding it was trained for.

    Reuses the transformer family's tokenizer loader; embeddings are cached by text, so resampled windows
    (the drift benchmark) embed each distinct text once.
    """

    name = "minilm"

    def __init__(self, *, max_length: int = 128, batch_size: int = 32) -> None:
        self.max_length = max_length
        self.batch_size = batch_size
        self._model: Any = None
        self._tokenizer: Any = None
        self._cache: dict[str, np.ndarray] = {}

    def _load(self) -> None:
        import torch
        from transformers import AutoModel

        from tagops.models.transformer.network import (
            default_threads,
            load_tokenizer,
            quiet_transformers,
            resolve_encoder,
        )

        quiet_transformers()
        source = resolve_encoder(None)
        torch.set_num_threads(default_threads())
        self._tokenizer = load_tokenizer(source)
        self._model = AutoModel.from_pretrained(source).eval()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled last hidden states, L2-normalised (as sentence-transformers does for this model)."""
        missing = sorted({t for t in texts if t not in self._cache}, key=len)
        if missing:
            import torch

            if self._model is None:
                self._load()
            with torch.inference_mode():
                for start in range(0, len(missing), self.batch_size):
                    batch = missing[start : start + self.batch_size]
                    encoded = self._tokenizer(
                        batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                    )
                    hidden = self._model(**encoded).last_hidden_state
                    mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                    pooled = torch.nn.functional.normalize(pooled, dim=1)
                    for text, row in zip(batch, pooled.numpy(), strict=True):
                        self._cache[text] = row.astype(np.float32)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


def create_embedder(name: str) -> Embedder | None:
    """The embedder a reference names (``minilm``, ``hashing-DIMS`` or ``hashing``); ``None`` for ``none``."""
    if name == "none":
        return None
    if name == "minilm":
        return MiniLMEmbedder()
    if name == "hashing":
        return HashingEmbedder()
    if name.startswith("hashing-") and name.removeprefix("hashing-").isdigit():
        return HashingEmbedder(dims=int(name.removeprefix("hashing-")))
    raise ValueError(f"unknown embedder {name!r}: use minilm, hashing or none")


# -------------------------------------------------------------------------------------- statistics
def _check_lengths(texts: Sequence[str], **columns: Sequence[Any] | None) -> None:
    for name, column in columns.items():
        if column is not None and len(column) != len(texts):
            raise ValueError(f"{name} has {len(column)} values for {len(texts)} texts")


def reference_stats(
    texts: Sequence[str],
    predicted_tags: Sequence[str],
    confidences: Sequence[float],
    labels: Sequence[str] | None,
    embedder: Embedder | None = None,
    *,
    vocabulary_texts: Sequence[str] | None = None,
    cfg: ReferenceConfig | None = None,
    holdout_f1: float | None = None,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """JSON-ready statistics of ``texts`` (the model's inputs) and the model's answers on them.

    Args:
        texts: Model inputs (title and description joined) the model did not train on: the holdout.
        predicted_tags: The model's top tag for each text (no abstention, as the monitor reads it).
        confidences: The top tag's probability for each text.
        labels: True tags, when known (the label distribution); ``None`` otherwise.
        embedder: Sentence embedder for the embedding sample; ``None`` stores no embeddings.
        vocabulary_texts: Texts the vocabulary is built from (the training texts). Measuring OOV on the
            texts that built the vocabulary would always give 0, so they should differ from ``texts``.
        cfg: Bucket edges and sample sizes (defaults when ``None``).
        holdout_f1: The model's weighted F1 on ``texts``, the yardstick for live feedback.
        model: Provenance to store (family, version, run), free-form.

    """
    from tagops.config import ReferenceConfig

    cfg = cfg or ReferenceConfig()
    _check_lengths(texts, predicted_tags=predicted_tags, confidences=confidences, labels=labels)
    if not texts:
        raise ValueError("reference statistics need at least one text")
    conf = np.asarray(confidences, dtype=float)
    if np.any(~np.isfinite(conf)) or np.any((conf < 0) | (conf > 1)):
        raise ValueError("confidences must be probabilities between 0 and 1")
    rng = np.random.default_rng(cfg.seed)
    counts = token_counts(texts)
    vocabulary = build_vocabulary(vocabulary_texts if vocabulary_texts is not None else texts)
    unknown, total = oov_counts(texts, frozenset(vocabulary))
    embedding: dict[str, Any] | None = None
    if embedder is not None and cfg.embedding_sample > 0:
        index = _sample(np.arange(len(texts)), cfg.embedding_sample, rng)
        vectors = embedder.embed([texts[i] for i in index])
        embedding = {
            "embedder": embedder.name,
            "dims": int(vectors.shape[1]),
            "sample": np.round(vectors.astype(float), 5).tolist(),
        }
    return {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "num_rows": len(texts),
        "model": model or {},
        "holdout_f1": holdout_f1,
        "token_counts": {
            "sample": _sample(counts, cfg.value_sample, rng).tolist(),
            **summarize_values(counts.astype(float)),
        },
        "length_buckets": {
            "edges": list(cfg.length_edges),
            "counts": bucket_counts(counts, cfg.length_edges),
        },
        "vocabulary": {"size": len(vocabulary), "tokens": vocabulary},
        "oov": {
            "token_rate": float(unknown.sum() / max(int(total.sum()), 1)),
            "edges": list(cfg.oov_edges),
            "counts": bucket_counts(oov_rates(unknown, total), cfg.oov_edges),
        },
        "labels": dict(sorted(Counter(labels).items())) if labels is not None else None,
        "predicted_tags": dict(sorted(Counter(predicted_tags).items())),
        "confidence": {
            "sample": np.round(_sample(conf, cfg.value_sample, rng), 6).tolist(),
            **summarize_values(conf),
        },
        "embedding": embedding,
    }


REQUIRED_KEYS = ("schema_version", "token_counts", "length_buckets", "vocabulary", "oov", "predicted_tags")


def check_reference(reference: dict[str, Any], *, source: str = "reference statistics") -> None:
    """Refuse a reference that is not one :func:`reference_stats` wrote (naming what is missing)."""
    missing = [key for key in REQUIRED_KEYS if key not in reference]
    if missing:
        raise ValueError(f"{source}: not tagops reference statistics (missing {missing})")
    if reference["schema_version"] != SCHEMA_VERSION:
        raise ValueError(
            f"{source}: schema_version {reference['schema_version']} is not {SCHEMA_VERSION}; "
            "re-register the model to record it again"
        )


def window_stats(
    texts: Sequence[str],
    predicted_tags: Sequence[str],
    confidences: Sequence[float],
    reference: dict[str, Any],
    *,
    embedder: Embedder | None = None,
    feedback: Sequence[tuple[str, str]] = (),
    max_embedding_rows: int = 512,
    seed: int = 1234,
) -> dict[str, Any]:
    """The features of a traffic window, measured exactly as ``reference`` was (its edges and vocabulary).

    Args:
        texts: Model inputs of the window's predictions.
        predicted_tags: Top tag of each prediction.
        confidences: Top tag's probability of each prediction.
        reference: What :func:`reference_stats` returned for the model that answered.
        embedder: Must be the embedder the reference names (checked); ``None`` skips the embedding test.
        feedback: ``(true tag, predicted tag)`` of the predictions that received feedback.
        max_embedding_rows: A random subset of this many rows is embedded (MMD cost is quadratic).
        seed: Seed of that subset.

    """
    check_reference(reference)
    _check_lengths(texts, predicted_tags=predicted_tags, confidences=confidences)
    counts = token_counts(texts)
    unknown, total = oov_counts(texts, frozenset(reference["vocabulary"]["tokens"]))
    embedding = None
    stored = reference.get("embedding")
    if embedder is not None and stored is not None and texts:
        if embedder.name != stored["embedder"]:
            raise ValueError(
                f"the reference was embedded with {stored['embedder']!r}, the window with {embedder.name!r}"
            )
        index = _sample(np.arange(len(texts)), max_embedding_rows, np.random.default_rng(seed))
        embedding = embedder.embed([texts[i] for i in index])
    return {
        "num_rows": len(texts),
        "token_counts": counts,
        "length_buckets": bucket_counts(counts, reference["length_buckets"]["edges"]),
        "oov_token_rate": float(unknown.sum() / max(int(total.sum()), 1)),
        "oov_buckets": bucket_counts(oov_rates(unknown, total), reference["oov"]["edges"]),
        "predicted_tags": dict(sorted(Counter(predicted_tags).items())),
        "confidences": np.asarray(confidences, dtype=float),
        "embedding": embedding,
        "feedback": list(feedback),
    }
