"""TF-IDF over word and character n-grams + multinomial logistic regression.

Saved as plain data: the vocabularies in JSON, the idf vectors and classifier weights in safetensors.
Loading rebuilds the scikit-learn objects from that data, so no code is ever unpickled, and it is fast:
each vocabulary is one JSON list of terms, not stored item by item as skops does.

Prediction does not go through the scikit-learn pipeline: for one item, input validation, joblib's
sequential ``FeatureUnion`` and sparse-matrix plumbing cost several times the n-gram counting
(benchmarks/serve.py measures the single-item latency). :class:`_Scorer` applies the fitted vectorizers'
own analyzers and the same arithmetic (sublinear tf, idf, l2 norm, softmax) with plain numpy; a unit test
holds it to the pipeline's probabilities within 1e-12.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from tagops import LABELS
from tagops.config import LinearParams
from tagops.data.clean import clean_texts
from tagops.models.base import check_labels, read_model_info, write_model_info

VOCABULARY_FILE = "vocabulary.json"
WEIGHTS_FILE = "weights.safetensors"


class LinearModel:
    """The fast, strong baseline: sparse features, a linear classifier, calibrated-ish probabilities."""

    family = "linear"

    def __init__(self, params: LinearParams | None = None) -> None:
        self.params = params or LinearParams()
        self.labels: tuple[str, ...] = LABELS
        self.estimator_: Any = None
        self._scorer: _Scorer | None = None

    def _clean(self, texts: Sequence[str]) -> list[str]:
        c = self.params.cleaning
        return clean_texts(
            texts, lower=c.lower, remove_urls=c.remove_urls, remove_stopwords=c.remove_stopwords
        )

    def _build(self, seed: int) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        p = self.params
        features = FeatureUnion(
            [
                (
                    "word",
                    TfidfVectorizer(
                        analyzer="word",
                        ngram_range=p.word_ngram_range,
                        min_df=p.min_df,
                        max_features=p.max_features,
                        sublinear_tf=p.sublinear_tf,
                        token_pattern=r"(?u)\b\w+\b",
                    ),
                ),
                (
                    "char",
                    TfidfVectorizer(
                        analyzer="char_wb",
                        ngram_range=p.char_ngram_range,
                        min_df=p.min_df,
                        max_features=p.max_features,
                        sublinear_tf=p.sublinear_tf,
                    ),
                ),
            ]
        )
        classifier = LogisticRegression(
            C=p.C, class_weight=p.class_weight, max_iter=p.max_iter, random_state=seed
        )
        return Pipeline([("features", features), ("classifier", classifier)])

    def fit(self, texts: Sequence[str], labels: Sequence[str], *, seed: int = 1234) -> Self:
        """Fit features and classifier on raw texts."""
        check_labels(labels)
        texts, labels = list(texts), list(labels)
        if self.params.label_guide:
            from tagops.data.augment import label_guide_statements

            guide_texts, guide_tags = label_guide_statements()
            texts, labels = texts + guide_texts, labels + guide_tags
        estimator = self._build(seed)
        estimator.fit(self._clean(texts), labels)
        self.estimator_ = estimator
        self._scorer = _Scorer(estimator)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities in :data:`tagops.LABELS` order (zeros for a class unseen in training)."""
        if self._scorer is None:  # set with estimator_ by fit and load
            raise RuntimeError("LinearModel is not fitted")
        proba = self._scorer.predict_proba(self._clean(texts))
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for j, label in enumerate(self.estimator_.classes_):
            out[:, self.labels.index(label)] = proba[:, j]
        return out

    def save(self, directory: Path) -> None:
        """Write ``model.json``, the vocabularies (JSON) and the arrays (safetensors)."""
        from safetensors.numpy import save_file

        if self.estimator_ is None:
            raise RuntimeError("LinearModel is not fitted")
        features = self.estimator_.named_steps["features"]
        classifier = self.estimator_.named_steps["classifier"]
        vocabularies = {}
        arrays = {"coef": np.ascontiguousarray(classifier.coef_), "intercept": classifier.intercept_.copy()}
        for name, vectorizer in features.transformer_list:
            terms = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
            vocabularies[name] = terms
            arrays[f"idf.{name}"] = vectorizer.idf_.copy()
        write_model_info(
            directory,
            family=self.family,
            labels=self.labels,
            params=self.params.model_dump(mode="json"),
            extra={"classes": [str(c) for c in classifier.classes_]},
        )
        (directory / VOCABULARY_FILE).write_text(
            json.dumps(vocabularies, ensure_ascii=False), encoding="utf-8"
        )
        save_file(arrays, str(directory / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Rebuild the fitted pipeline from data: fixed vocabularies, idf vectors, weights."""
        from safetensors.numpy import load_file

        info = read_model_info(directory)
        model = cls(LinearParams.model_validate(info["params"]))
        model.labels = tuple(info["labels"])
        vocabularies = json.loads((directory / VOCABULARY_FILE).read_text(encoding="utf-8"))
        arrays = load_file(str(directory / WEIGHTS_FILE))
        estimator = model._build(seed=0)
        for name, vectorizer in estimator.named_steps["features"].transformer_list:
            vectorizer.set_params(
                vocabulary={term: i for i, term in enumerate(vocabularies[name])}, max_features=None
            )
            vectorizer.fit([""])  # validates the fixed vocabulary; the idf is replaced just below
            vectorizer.idf_ = arrays[f"idf.{name}"]
        classifier = estimator.named_steps["classifier"]
        classifier.classes_ = np.array(info["classes"], dtype=object)
        classifier.coef_ = arrays["coef"]
        classifier.intercept_ = arrays["intercept"]
        model.estimator_ = estimator
        model._scorer = _Scorer(estimator)
        return model


class _Block:
    """One fitted TF-IDF vectorizer as data: its analyzer, vocabulary, idf and weight columns."""

    def __init__(self, vectorizer: Any, weights: np.ndarray) -> None:
        if vectorizer.norm not in ("l2", None) or not vectorizer.use_idf or vectorizer.binary:
            raise ValueError(f"unsupported TF-IDF settings: {vectorizer.get_params()}")
        self.analyze = vectorizer.build_analyzer()
        self.vocabulary: dict[str, int] = vectorizer.vocabulary_
        self.idf = np.asarray(vectorizer.idf_, dtype=np.float64)
        self.sublinear = bool(vectorizer.sublinear_tf)
        self.l2 = vectorizer.norm == "l2"
        self.weights = weights  # (terms, classes), rows in vocabulary order

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """The block's share of the decision function, one row per (cleaned) text."""
        vocabulary = self.vocabulary
        columns: list[int] = []
        counts: list[int] = []
        lengths: list[int] = []
        for text in texts:
            before = len(columns)
            for term, count in Counter(self.analyze(text)).items():
                index = vocabulary.get(term)
                if index is not None:
                    columns.append(index)
                    counts.append(count)
            lengths.append(len(columns) - before)
        rows = np.repeat(np.arange(len(texts)), lengths)
        cols = np.array(columns, dtype=np.intp)
        values = np.array(counts, dtype=np.float64)
        if self.sublinear:
            values = np.log(values) + 1.0
        values *= self.idf[cols]
        if self.l2:  # every stored value is positive, so a row with terms has a positive norm
            norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=len(texts)))
            values /= norms[rows]
        weighted = self.weights[cols] * values[:, None]
        return np.column_stack(
            [np.bincount(rows, weights=column, minlength=len(texts)) for column in weighted.T]
        )


class _Scorer:
    """The fitted word + char TF-IDF and logistic regression, applied without scikit-learn's overhead."""

    def __init__(self, estimator: Any) -> None:
        classifier = estimator.named_steps["classifier"]
        coef = np.asarray(classifier.coef_, dtype=np.float64)
        self.intercept = np.asarray(classifier.intercept_, dtype=np.float64)
        self.binary = len(classifier.classes_) <= 2
        self.blocks: list[_Block] = []
        offset = 0
        for _, vectorizer in estimator.named_steps["features"].transformer_list:
            size = len(vectorizer.idf_)
            self.blocks.append(_Block(vectorizer, np.ascontiguousarray(coef[:, offset : offset + size].T)))
            offset += size
        if offset != coef.shape[1]:
            raise ValueError(f"classifier has {coef.shape[1]} weights for {offset} features")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities in the classifier's ``classes_`` order."""
        from scipy.special import expit

        decision = np.tile(self.intercept, (len(texts), 1))
        for block in self.blocks:
            decision += block.logits(texts)
        if self.binary:  # scikit-learn's binary logistic regression: one logit for the second class
            positive = expit(decision[:, 0])
            return np.column_stack([1.0 - positive, positive])
        # sklearn.utils.extmath.softmax does the same, but its array-API dispatch costs more than the
        # arithmetic for one item.
        decision -= decision.max(axis=1, keepdims=True)
        np.exp(decision, out=decision)
        decision /= decision.sum(axis=1, keepdims=True)
        return decision
