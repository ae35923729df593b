"""TF-IDF over word and character n-grams + multinomial logistic regression.

Saved with skops and loaded against an allow-list of scikit-learn/numpy/scipy types, so a tampered
artifact cannot run code on load.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from tagops import LABELS
from tagops.config import LinearParams
from tagops.data.clean import clean_texts
from tagops.models.base import check_labels, read_model_info, write_model_info

ESTIMATOR_FILE = "estimator.skops"
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


class LinearModel:
    """The fast, strong baseline: sparse features, a linear classifier, calibrated-ish probabilities."""

    family = "linear"

    def __init__(self, params: LinearParams | None = None) -> None:
        self.params = params or LinearParams()
        self.labels: tuple[str, ...] = LABELS
        self.estimator_: Any = None

    def _clean(self, texts: Sequence[str]) -> list[str]:
        c = self.params.cleaning
        return clean_texts(texts, lower=c.lower, remove_urls=c.remove_urls, remove_stopwords=c.remove_stopwords)

    def _build(self, seed: int) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        p = self.params
        features = FeatureUnion(
            [
                ("word", TfidfVectorizer(analyzer="word", ngram_range=p.word_ngram_range, min_df=p.min_df,
                                         max_features=p.max_features, sublinear_tf=p.sublinear_tf,
                                         token_pattern=r"(?u)\b\w+\b")),
                ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=p.char_ngram_range, min_df=p.min_df,
                                         max_features=p.max_features, sublinear_tf=p.sublinear_tf)),
            ]
        )
        classifier = LogisticRegression(C=p.C, class_weight=p.class_weight, max_iter=p.max_iter,
                                        random_state=seed)
        return Pipeline([("features", features), ("classifier", classifier)])

    def fit(self, texts: Sequence[str], labels: Sequence[str], *, seed: int = 1234) -> Self:
        """Fit features and classifier on raw texts."""
        check_labels(labels)
        estimator = self._build(seed)
        estimator.fit(self._clean(texts), list(labels))
        self.estimator_ = estimator
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities in :data:`tagops.LABELS` order (zeros for a class unseen in training)."""
        if self.estimator_ is None:
            raise RuntimeError("LinearModel is not fitted")
        proba = self.estimator_.predict_proba(self._clean(texts))
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for j, label in enumerate(self.estimator_.classes_):
            out[:, self.labels.index(label)] = proba[:, j]
        return out

    def save(self, directory: Path) -> None:
        """Write ``model.json`` and the skops-serialised estimator."""
        import skops.io as sio

        if self.estimator_ is None:
            raise RuntimeError("LinearModel is not fitted")
        write_model_info(directory, family=self.family, labels=self.labels,
                         params=self.params.model_dump(mode="json"))
        sio.dump(self.estimator_, directory / ESTIMATOR_FILE)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Load, trusting only scikit-learn, numpy and scipy types found in the file."""
        import skops.io as sio

        info = read_model_info(directory)
        path = directory / ESTIMATOR_FILE
        untrusted = sio.get_untrusted_types(file=path)
        refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
        if refused:
            raise ValueError(f"{path}: refuses to load unexpected types {refused}")
        model = cls(LinearParams.model_validate(info["params"]))
        model.labels = tuple(info["labels"])
        model.estimator_ = sio.load(path, trusted=untrusted)
        return model
