"""Transparent keyword rules: the rule-based system to beat before anything complex.

Each tag has a list of keywords with weights: curated seed keywords plus the terms most over-represented
in that tag's training texts (smoothed log-odds against the other tags). A text's score for a tag is its
log prior plus the weights of the keywords it contains; a softmax turns scores into probabilities. The
whole model is one readable JSON file a person can audit and edit.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np

from tagops import LABELS
from tagops.config import RulesParams
from tagops.data.clean import clean_as
from tagops.models.base import check_labels, read_model_info, write_model_info

RULES_FILE = "rules.json"

#: Curated keywords (cleaned form, unigrams or bigrams) that signal a tag whatever the training data says.
SEED_KEYWORDS: dict[str, tuple[str, ...]] = {
    "computer-vision": (
        "image",
        "images",
        "vision",
        "video",
        "videos",
        "detection",
        "segmentation",
        "cnn",
        "gan",
        "pose",
        "face",
        "camera",
        "pixel",
        "yolo",
        "opencv",
        "ocr",
        "photo",
        "visual",
        "object detection",
        "image classification",
        "style transfer",
        "computer vision",
    ),
    "natural-language-processing": (
        "text",
        "language",
        "nlp",
        "bert",
        "transformer",
        "transformers",
        "gpt",
        "sentiment",
        "translation",
        "summarization",
        "chatbot",
        "word",
        "sentence",
        "tokenizer",
        "embeddings",
        "question answering",
        "language model",
        "natural language",
        "named entity",
        "text classification",
    ),
    "mlops": (
        "mlops",
        "deployment",
        "deploy",
        "production",
        "serving",
        "monitoring",
        "docker",
        "kubernetes",
        "pipeline",
        "pipelines",
        "experiment tracking",
        "feature store",
        "versioning",
        "infrastructure",
        "ci",
        "api",
        "orchestration",
        "model serving",
    ),
    "other": (
        "reinforcement",
        "graph",
        "graphs",
        "time series",
        "recommendation",
        "recommender",
        "tabular",
        "agent",
        "forecasting",
        "gnn",
        "reinforcement learning",
        "graph neural",
    ),
}


def _terms(text: str) -> set[str]:
    """Unigrams and bigrams of a cleaned text, as a set (presence, not counts)."""
    tokens = text.split()
    return set(tokens) | {f"{a} {b}" for a, b in itertools.pairwise(tokens)}


class RulesModel:
    """Keyword rules with weights; ``fit`` mines keywords, ``explain`` shows which ones fired."""

    family = "rules"

    def __init__(self, params: RulesParams | None = None) -> None:
        self.params = params or RulesParams()
        self.labels: tuple[str, ...] = LABELS
        self.keywords_: dict[str, dict[str, float]] = {}
        self.log_prior_: dict[str, float] = {}

    def _clean(self, texts: Sequence[str]) -> list[str]:
        return clean_as(texts, self.params.cleaning)

    def fit(self, texts: Sequence[str], labels: Sequence[str], *, seed: int = 1234) -> Self:
        """Mine the most discriminative terms per tag and merge them with the seed keywords."""
        del seed  # deterministic: nothing is sampled
        check_labels(labels)
        documents = [_terms(t) for t in self._clean(texts)]
        per_label: dict[str, Counter[str]] = {label: Counter() for label in self.labels}
        for terms, label in zip(documents, labels, strict=True):
            per_label[label].update(terms)
        totals = Counter(labels)
        everywhere: Counter[str] = Counter()
        for counter in per_label.values():
            everywhere.update(counter)
        n = len(labels)
        self.log_prior_ = {
            lab: math.log((totals.get(lab, 0) + 1) / (n + len(self.labels))) for lab in self.labels
        }
        keywords: dict[str, dict[str, float]] = {}
        for label in self.labels:
            inside, outside = totals.get(label, 0), n - totals.get(label, 0)
            scored: list[tuple[float, str]] = []
            for term, count in per_label[label].items():
                if everywhere[term] < self.params.min_term_count:
                    continue
                rest = everywhere[term] - count
                # Smoothed log-odds of the term's document rate inside vs. outside the tag.
                weight = math.log((count + 0.5) / (inside + 1)) - math.log((rest + 0.5) / (outside + 1))
                if weight > 0:
                    scored.append((weight, term))
            scored.sort(reverse=True)
            chosen = {term: round(weight, 4) for weight, term in scored[: self.params.mined_terms_per_class]}
            for term in SEED_KEYWORDS.get(label, ()):
                chosen[term] = max(chosen.get(term, 0.0), self.params.seed_weight)
            keywords[label] = dict(sorted(chosen.items()))
        self.keywords_ = keywords
        return self

    def _scores(self, cleaned: str) -> np.ndarray:
        terms = _terms(cleaned)
        return np.array(
            [
                self.log_prior_[lab] + sum(w for t, w in self.keywords_[lab].items() if t in terms)
                for lab in self.labels
            ]
        )

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax of keyword scores, in :attr:`labels` order."""
        if not self.keywords_:
            raise RuntimeError("RulesModel is not fitted")
        scores = np.vstack([self._scores(t) for t in self._clean(texts)]) / self.params.temperature
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)

    def explain(self, text: str) -> dict[str, list[str]]:
        """The keywords that fired for each tag: the reason behind a prediction."""
        terms = _terms(self._clean([text])[0])
        return {lab: sorted(t for t in self.keywords_[lab] if t in terms) for lab in self.labels}

    def save(self, directory: Path) -> None:
        """Write ``model.json`` and the human-readable ``rules.json``."""
        if not self.keywords_:
            raise RuntimeError("RulesModel is not fitted")
        write_model_info(
            directory, family=self.family, labels=self.labels, params=self.params.model_dump(mode="json")
        )
        rules = {"log_prior": self.log_prior_, "keywords": self.keywords_}
        (directory / RULES_FILE).write_text(json.dumps(rules, indent=2, sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        info = read_model_info(directory)
        model = cls(RulesParams.model_validate(info["params"]))
        model.labels = tuple(info["labels"])
        rules = json.loads((directory / RULES_FILE).read_text(encoding="utf-8"))
        model.log_prior_ = {k: float(v) for k, v in rules["log_prior"].items()}
        model.keywords_ = {k: {t: float(w) for t, w in v.items()} for k, v in rules["keywords"].items()}
        return model
