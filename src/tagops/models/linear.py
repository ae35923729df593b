"""TF-IDF over word and character n-grams + multinomial logistic regression.

Saved as plain data: the vocabularies in JSON, the idf vectors and classifier weights in safetensors.
Loading reads that data straight into :class:`_Scorer`, so no code is ever unpickled and scikit-learn is
not imported at all: serving a saved model needs numpy only. Importing scikit-learn (its base modules
pull in ``scipy.stats``) would add about a second to every start of a server or replica
(``benchmarks/serve_defaults.py`` measures the start).

Prediction does not go through the scikit-learn pipeline either: for one item, input validation, joblib's
sequential ``FeatureUnion`` and sparse-matrix plumbing cost several times the n-gram counting
(benchmarks/serve.py measures the single-item latency). :class:`_Scorer` splits text into n-grams exactly
as the fitted vectorizers do (:func:`word_analyzer`, :func:`char_wb_analyzer`) and applies the same
arithmetic (sublinear tf, idf, l2 norm, softmax) with plain numpy; unit tests hold the n-grams to
scikit-learn's analyzers, term for term, and the probabilities to the pipeline's within 1e-12.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from tagops import LABELS
from tagops.config import LinearParams
from tagops.data.clean import clean_as
from tagops.models.base import check_labels, read_model_info, write_model_info

VOCABULARY_FILE = "vocabulary.json"
WEIGHTS_FILE = "weights.safetensors"
#: A word is one or more word characters (scikit-learn's default pattern drops one-letter words).
WORD_TOKEN_PATTERN = r"(?u)\b\w+\b"
#: The feature blocks, in the order their columns follow each other in the classifier's weights.
BLOCKS = ("word", "char")

Analyzer = Callable[[str], list[str]]


def word_analyzer(ngram_range: tuple[int, int]) -> Analyzer:
    """scikit-learn's ``analyzer="word"`` (:data:`WORD_TOKEN_PATTERN`, lowercase, no stop words)."""
    findall = re.compile(WORD_TOKEN_PATTERN).findall
    min_n, max_n = ngram_range

    def analyze(text: str) -> list[str]:
        tokens: list[str] = findall(text.lower())
        grams = list(tokens) if min_n == 1 else []
        for n in range(max(min_n, 2), min(max_n, len(tokens)) + 1):
            grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        return grams

    return analyze


_WHITE_SPACES = re.compile(r"\s\s+")


def char_wb_analyzer(ngram_range: tuple[int, int]) -> Analyzer:
    """scikit-learn's ``analyzer="char_wb"`` (lowercase, no accent stripping) as a function.

    Character n-grams inside each whitespace-separated word padded with one space on each side; a word
    shorter than the smallest ``n`` (padding included) counts once, whole.
    """
    min_n, max_n = ngram_range

    def analyze(text: str) -> list[str]:
        grams: list[str] = []
        append = grams.append  # bound once: the loop below runs for every n-gram of every text
        for word in _WHITE_SPACES.sub(" ", text.lower()).split():
            padded = " " + word + " "
            length = len(padded)
            for n in range(min_n, max_n + 1):
                if length <= n:  # the whole padded word, once, and no longer n-grams
                    append(padded)
                    break
                for i in range(length - n + 1):
                    append(padded[i : i + n])
        return grams

    return analyze


class LinearModel:
    """The fast, strong baseline: sparse features, a linear classifier, calibrated-ish probabilities."""

    family = "linear"

    def __init__(self, params: LinearParams | None = None) -> None:
        self.params = params or LinearParams()
        self.labels: tuple[str, ...] = LABELS
        #: The fitted scikit-learn pipeline, set by :meth:`fit` (a loaded model is scored from its data
        #: and never builds one).
        self.estimator_: Any = None
        self._scorer: _Scorer | None = None

    def _clean(self, texts: Sequence[str]) -> list[str]:
        return clean_as(texts, self.params.cleaning)

    def _analyzers(self) -> dict[str, Analyzer]:
        """Each feature block's n-grams, as its vectorizer in :meth:`_build` makes them."""
        p = self.params
        return {"word": word_analyzer(p.word_ngram_range), "char": char_wb_analyzer(p.char_ngram_range)}

    def _build(self, seed: int) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import FeatureUnion, Pipeline

        p = self.params
        shared = {"min_df": p.min_df, "max_features": p.max_features, "sublinear_tf": p.sublinear_tf}
        vectorizers = {
            "word": TfidfVectorizer(
                analyzer="word", ngram_range=p.word_ngram_range, token_pattern=WORD_TOKEN_PATTERN, **shared
            ),
            "char": TfidfVectorizer(analyzer="char_wb", ngram_range=p.char_ngram_range, **shared),
        }
        features = FeatureUnion([(name, vectorizers[name]) for name in BLOCKS])
        classifier = LogisticRegression(
            C=p.C, class_weight=p.class_weight, max_iter=p.max_iter, random_state=seed
        )
        return Pipeline([("features", features), ("classifier", classifier)])

    def fit(self, texts: Sequence[str], labels: Sequence[str], *, seed: int = 1234) -> Self:
        """Fit features and classifier on raw texts."""
        check_labels(labels)
        texts, labels = self._training_rows(texts, labels)
        estimator = self._build(seed)
        estimator.fit(self._clean(texts), labels)
        self.estimator_ = estimator
        self._scorer = _Scorer.from_pipeline(estimator, self._analyzers())
        return self

    def _training_rows(self, texts: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
        """The rows the classifier fits: the given ones, then the guide's statements and the written rows.

        Each of the two is added when the params ask for it; a written `other` row already among the
        given ones is not added again.
        """
        texts, labels = list(texts), list(labels)
        if self.params.label_guide:
            from tagops.data.augment import label_guide_statements

            guide_texts, guide_tags = label_guide_statements()
            texts, labels = texts + guide_texts, labels + guide_tags
        if self.params.other_topics:
            from tagops.data.augment import with_other_topics_texts

            texts, labels = with_other_topics_texts(texts, labels)
        return texts, labels

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities in :data:`tagops.LABELS` order (zeros for a class unseen in training)."""
        scorer = self._fitted()
        proba = scorer.predict_proba(self._clean(texts))
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for j, label in enumerate(scorer.classes):
            out[:, self.labels.index(label)] = proba[:, j]
        return out

    def _fitted(self) -> _Scorer:
        if self._scorer is None:  # set by fit and load
            raise RuntimeError("LinearModel is not fitted")
        return self._scorer

    def save(self, directory: Path) -> None:
        """Write ``model.json``, the vocabularies (JSON) and the arrays (safetensors)."""
        from safetensors.numpy import save_file

        scorer = self._fitted()
        arrays = {"coef": scorer.coef(), "intercept": scorer.intercept.copy()}
        vocabularies = {}
        for name, block in zip(BLOCKS, scorer.blocks, strict=True):
            vocabularies[name] = block.terms()
            arrays[f"idf.{name}"] = block.idf.copy()
        write_model_info(
            directory,
            family=self.family,
            labels=self.labels,
            params=self.params.model_dump(mode="json"),
            extra={"classes": list(scorer.classes)},
        )
        (directory / VOCABULARY_FILE).write_text(
            json.dumps(vocabularies, ensure_ascii=False), encoding="utf-8"
        )
        save_file(arrays, str(directory / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read the vocabularies, idf vectors and weights into a scorer (scikit-learn is not imported)."""
        from safetensors.numpy import load_file

        info = read_model_info(directory)
        model = cls(LinearParams.model_validate(info["params"]))
        model.labels = tuple(info["labels"])
        vocabularies = json.loads((directory / VOCABULARY_FILE).read_text(encoding="utf-8"))
        arrays = load_file(str(directory / WEIGHTS_FILE))
        analyzers = model._analyzers()
        blocks = [
            _Block(
                analyzers[name],
                {term: i for i, term in enumerate(vocabularies[name])},
                arrays[f"idf.{name}"],
                sublinear=model.params.sublinear_tf,
            )
            for name in BLOCKS
        ]
        model._scorer = _Scorer(info["classes"], arrays["coef"], arrays["intercept"], blocks)
        return model


class _Block:
    """One fitted TF-IDF vectorizer as data: its analyzer, vocabulary and idf."""

    def __init__(
        self,
        analyze: Analyzer,
        vocabulary: dict[str, int],
        idf: np.ndarray,
        *,
        sublinear: bool,
        l2: bool = True,
    ) -> None:
        if len(vocabulary) != len(idf):
            raise ValueError(f"a vocabulary of {len(vocabulary)} terms has {len(idf)} idf values")
        self.analyze = analyze
        self.vocabulary = vocabulary
        self.idf = np.asarray(idf, dtype=np.float64)
        self.sublinear = sublinear
        self.l2 = l2

    def terms(self) -> list[str]:
        """The vocabulary as a list, each term at its column."""
        return sorted(self.vocabulary, key=self.vocabulary.__getitem__)

    def logits(self, texts: Sequence[str], weights: np.ndarray) -> np.ndarray:
        """The block's share of the decision function, one row per (cleaned) text.

        ``weights`` are the classifier's columns for this block's terms, ``(terms, classes)``.
        """
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
        weighted = weights[cols] * values[:, None]
        return np.column_stack(
            [np.bincount(rows, weights=column, minlength=len(texts)) for column in weighted.T]
        )


class _Scorer:
    """Word + char TF-IDF and logistic regression as arrays, applied without scikit-learn."""

    def __init__(
        self, classes: Sequence[str], coef: np.ndarray, intercept: np.ndarray, blocks: Sequence[_Block]
    ) -> None:
        coef = np.asarray(coef, dtype=np.float64)
        self.classes = tuple(str(c) for c in classes)
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.binary = len(self.classes) <= 2
        self.blocks = list(blocks)
        #: Per block, its columns of ``coef`` as rows in vocabulary order (a term's row is one lookup).
        self.weights: list[np.ndarray] = []
        offset = 0
        for block in self.blocks:
            size = len(block.idf)
            self.weights.append(np.ascontiguousarray(coef[:, offset : offset + size].T))
            offset += size
        if offset != coef.shape[1]:
            raise ValueError(f"classifier has {coef.shape[1]} weights for {offset} features")

    @classmethod
    def from_pipeline(cls, estimator: Any, analyzers: dict[str, Analyzer]) -> _Scorer:
        """The scorer of a fitted :meth:`LinearModel._build` pipeline."""
        classifier = estimator.named_steps["classifier"]
        blocks = []
        for name, vectorizer in estimator.named_steps["features"].transformer_list:
            if (
                vectorizer.norm not in ("l2", None)
                or not vectorizer.use_idf
                or vectorizer.binary
                or not vectorizer.lowercase
                or vectorizer.strip_accents is not None
                or vectorizer.stop_words is not None
                or vectorizer.preprocessor is not None
                or vectorizer.tokenizer is not None
            ):
                raise ValueError(f"unsupported TF-IDF settings: {vectorizer.get_params()}")
            blocks.append(
                _Block(
                    analyzers[name],
                    {str(term): int(i) for term, i in vectorizer.vocabulary_.items()},
                    vectorizer.idf_,
                    sublinear=bool(vectorizer.sublinear_tf),
                    l2=vectorizer.norm == "l2",
                )
            )
        return cls(classifier.classes_, classifier.coef_, classifier.intercept_, blocks)

    def coef(self) -> np.ndarray:
        """The classifier's weights, ``(classes or 1, features)``, blocks side by side."""
        return np.ascontiguousarray(np.hstack([weights.T for weights in self.weights]))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities in :attr:`classes` order."""
        decision = np.tile(self.intercept, (len(texts), 1))
        for block, weights in zip(self.blocks, self.weights, strict=True):
            decision += block.logits(texts, weights)
        if self.binary:  # scikit-learn's binary logistic regression: one logit for the second class
            from scipy.special import expit

            positive = expit(decision[:, 0])
            return np.column_stack([1.0 - positive, positive])
        # sklearn.utils.extmath.softmax does the same, but its array-API dispatch costs more than the
        # arithmetic for one item.
        decision -= decision.max(axis=1, keepdims=True)
        np.exp(decision, out=decision)
        decision /= decision.sum(axis=1, keepdims=True)
        return decision
