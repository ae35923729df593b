"""Evaluation: overall, per-class, slice, calibration and confusion metrics, with bootstrap intervals.

``tagops evaluate --model models:/tagops@champion --data holdout.csv --output report.json`` writes the
JSON report and its plots next to it (:mod:`tagops.reports`). The metric functions are pure (arrays in,
dicts out).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np

from tagops.data.clean import count_words

if TYPE_CHECKING:
    from tagops.config import EvalConfig

ABSTAIN_LABEL = "other"

#: Found from the text, never from the label, so the slice also exists in production.
NLP_LLM_PATTERN = re.compile(
    r"\b(transformers?|llms?|large language models?|language models?|roberta|"
    r"(?:distil|sci|bio|camem|flau|mobile|tiny|al|de)?bert\w*|\w*gpt[-\w]*)\b",
    re.IGNORECASE,
)


class Scores(TypedDict):
    """Weighted precision, recall and F1 over all rows, with macro F1 and accuracy."""

    precision: float
    recall: float
    f1: float
    macro_f1: float
    accuracy: float
    num_samples: int
    #: Bootstrap 95 % interval of ``f1`` (``None`` without resamples).
    f1_ci95: NotRequired[list[float] | None]
    #: Rows that abstained to ``other`` under the report's threshold.
    abstained: NotRequired[int]


class ClassScores(TypedDict):
    """One class's precision, recall, F1 and support."""

    precision: float
    recall: float
    f1: float
    num_samples: int


class SliceScores(TypedDict):
    """Scores on a slice of the rows (``None`` when the slice is empty)."""

    precision: float | None
    recall: float | None
    f1: float | None
    num_samples: int


class CalibrationBin(TypedDict):
    """One bin of the reliability diagram."""

    low: float
    high: float
    count: int
    accuracy: float
    confidence: float


class Calibration(TypedDict):
    """Expected calibration error and the bins it was measured over."""

    ece: float
    bins: list[CalibrationBin]
    #: Bootstrap 95 % interval of ``ece`` (``None`` without resamples).
    ece_ci95: NotRequired[list[float] | None]


class RawScores(TypedDict):
    """The model's own answer (top tag of its uncalibrated probabilities, no abstention), for comparison."""

    f1: float
    macro_f1: float
    per_class_f1: dict[str, float]
    calibration: Calibration


class ConfusionMatrix(TypedDict):
    """Counts by (true label, predicted label), in ``labels`` order."""

    labels: list[str]
    matrix: list[list[int]]


class RowAnswers(TypedDict):
    """Each row's true and predicted tag, so two models can be compared on the same rows (paired)."""

    truth: list[str]
    predicted: list[str]


class EvalReport(TypedDict):
    """An evaluation report: what ``tagops evaluate`` writes as JSON and the gate compares."""

    overall: Scores
    per_class: dict[str, ClassScores]
    slices: NotRequired[dict[str, SliceScores]]
    calibration: NotRequired[Calibration]
    confusion_matrix: NotRequired[ConfusionMatrix]
    threshold: NotRequired[float | None]
    #: Scores without calibration or abstention, beside the as-served ones above.
    raw: NotRequired[RawScores]
    rows: NotRequired[RowAnswers]
    #: The model evaluated (its family, version, source), when it came from a predictor.
    model: NotRequired[dict[str, Any]]
    #: The labelled file evaluated on (``tagops evaluate``).
    data: NotRequired[str]
    #: The same model on transformed copies of the data and on the challenge set (``tagops evaluate``).
    robustness: NotRequired[RobustnessReport]


class RobustnessSlice(TypedDict):
    """One slice of a robustness evaluation: the scores of the report ``evaluate_predictor`` made on it."""

    #: ``holdout`` (the labelled data evaluated, as-is or transformed) or ``challenge``.
    source: str
    #: The transform applied (``tagops.data.robustness.TRANSFORMS``), ``None`` for the data as-is.
    transform: str | None
    #: The challenge set's style the slice holds, ``None`` for every style.
    style: str | None
    num_samples: int
    #: Rows left out because the transform left them without text.
    dropped: int
    #: Weighted F1, its bootstrap interval and macro F1 (``None`` when the slice has no rows).
    f1: float | None
    f1_ci95: list[float] | None
    macro_f1: float | None
    per_class_f1: dict[str, float]
    abstained: int
    ece: float | None


class RobustnessReport(TypedDict):
    """Scores of one model on the data as-is, on transformed copies and on the challenge set."""

    #: Seed of the transforms: the same seed rewrites the same rows the same way.
    seed: int
    slices: dict[str, RobustnessSlice]
    #: The slice with the lowest weighted F1 (``None`` when no slice has rows).
    worst_slice: str | None


def apply_threshold(
    proba: np.ndarray, labels: Sequence[str], threshold: float | None
) -> tuple[list[str], np.ndarray]:
    """Top-class predictions; below ``threshold`` the prediction abstains to ``other`` (as serving does)."""
    top = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    predicted = [labels[i] for i in top]
    abstained = np.zeros(len(predicted), dtype=bool)
    if threshold is not None:
        abstained = confidence < threshold
        predicted = [ABSTAIN_LABEL if a else p for p, a in zip(predicted, abstained, strict=True)]
    return predicted, abstained


def classification_scores(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> EvalReport:
    """Weighted precision/recall/F1 (sklearn), macro F1, accuracy and per-class scores."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=list(labels), average="weighted", zero_division=0
    )
    _, _, macro_f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=list(labels), average="macro", zero_division=0
    )
    p_c, r_c, f_c, n_c = precision_recall_fscore_support(
        y_true, y_pred, labels=list(labels), average=None, zero_division=0
    )
    return {
        "overall": {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "macro_f1": float(macro_f1),
            "accuracy": float(accuracy_score(y_true, y_pred)),
            "num_samples": len(y_true),
        },
        "per_class": {
            label: {
                "precision": float(p_c[i]),
                "recall": float(r_c[i]),
                "f1": float(f_c[i]),
                "num_samples": int(n_c[i]),
            }
            for i, label in enumerate(labels)
        },
    }


def _encode(*columns: Sequence[str]) -> tuple[dict[str, int], list[np.ndarray]]:
    """Integer codes over the labels of every column (sorted), and each column as an array of codes."""
    code = {label: i for i, label in enumerate(sorted(set().union(*map(set, columns))))}
    return code, [np.array([code[label] for label in column]) for column in columns]


def bootstrap_ci(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    *,
    samples: int,
    seed: int,
    level: float = 0.95,
) -> list[float] | None:
    """Percentile bootstrap interval of weighted F1 over resampled rows (``None`` when ``samples`` is 0).

    Vectorised: each resample is a row of index draws, and per-class counts come from one ``bincount``,
    so 1,000 resamples cost milliseconds instead of 1,000 calls to scikit-learn.
    """
    if samples <= 0 or len(y_true) == 0:
        return None
    code, (truth, pred) = _encode(y_true, y_pred)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(truth), size=(samples, len(truth)))
    values = _resampled_weighted_f1(truth, pred, idx, len(code))
    alpha = (1.0 - level) / 2
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]


def _resampled_class_f1(
    truth: np.ndarray, pred: np.ndarray, idx: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 and true support of every resample (one row of ``idx`` each), labels coded ``[0, k)``.

    Both arrays are ``(resamples, k)``; a class neither present nor predicted in a resample has F1 0.
    """
    samples, _ = idx.shape
    offsets = (np.arange(samples) * k)[:, None]
    t, p = truth[idx], pred[idx]
    support = np.bincount((t + offsets).ravel(), minlength=samples * k).reshape(samples, k)
    predicted = np.bincount((p + offsets).ravel(), minlength=samples * k).reshape(samples, k)
    hits = np.bincount((t + offsets)[t == p], minlength=samples * k).reshape(samples, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(support + predicted > 0, 2 * hits / (support + predicted), 0.0)
    return f1, support


def _resampled_weighted_f1(truth: np.ndarray, pred: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Weighted F1 of every resample (one row of ``idx`` each) of integer-coded labels in ``[0, k)``."""
    f1, support = _resampled_class_f1(truth, pred, idx, k)
    result: np.ndarray = (f1 * support).sum(axis=1) / idx.shape[1]  # sklearn "weighted": by true support
    return result


def class_f1_drop_probability(
    y_true: Sequence[str],
    pred_before: Sequence[str],
    pred_after: Sequence[str],
    *,
    samples: int,
    seed: int,
) -> dict[str, float]:
    """Per true class, the share of paired bootstrap resamples in which F1 falls from before to after.

    Both models are scored on the same resampled rows, so rows both get right (or both get wrong) move
    nothing and the share reflects only the rows they disagree on: for a class of 16 items, two items
    changing sides is a 0.1 F1 drop that a resample shows as real only as often as it is.
    """
    if samples <= 0 or len(y_true) == 0:
        return {}
    code, (truth, before, after) = _encode(y_true, pred_before, pred_after)
    idx = np.random.default_rng(seed).integers(0, len(truth), size=(samples, len(truth)))
    f1_before, _ = _resampled_class_f1(truth, before, idx, len(code))
    f1_after, _ = _resampled_class_f1(truth, after, idx, len(code))
    falls = (f1_before - f1_after > 1e-12).mean(axis=0)
    return {label: float(falls[code[label]]) for label in sorted(set(y_true))}


def bootstrap_f1_difference(
    y_true: Sequence[str],
    pred_before: Sequence[str],
    pred_after: Sequence[str],
    *,
    samples: int,
    seed: int,
    level: float = 0.95,
) -> list[float] | None:
    """Paired percentile bootstrap interval of weighted F1 (after − before) on the same rows.

    Both models are scored on the same resample each time, so the interval is that of the margin itself,
    narrower than two independent intervals would suggest. ``None`` when ``samples`` is 0 or no rows.
    """
    if samples <= 0 or len(y_true) == 0:
        return None
    code, (truth, before, after) = _encode(y_true, pred_before, pred_after)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(truth), size=(samples, len(truth)))
    k = len(code)
    values = _resampled_weighted_f1(truth, after, idx, k) - _resampled_weighted_f1(truth, before, idx, k)
    alpha = (1.0 - level) / 2
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]


def bootstrap_f1_difference_unpaired(
    truth_a: Sequence[str],
    pred_a: Sequence[str],
    truth_b: Sequence[str],
    pred_b: Sequence[str],
    *,
    samples: int,
    seed: int,
    level: float = 0.95,
) -> list[float] | None:
    """Percentile bootstrap interval of weighted F1(b) − F1(a) for two models scored on different rows.

    Each side is resampled on its own rows (a canary and the champion answer different requests), so the
    interval is wider than :func:`bootstrap_f1_difference`'s paired one. ``None`` without rows or samples.
    """
    if not truth_a or not truth_b or samples <= 0:
        return None
    code, (ta, pa, tb, pb) = _encode(truth_a, pred_a, truth_b, pred_b)
    rng = np.random.default_rng(seed)
    k = len(code)
    f1_a = _resampled_weighted_f1(ta, pa, rng.integers(0, len(ta), size=(samples, len(ta))), k)
    f1_b = _resampled_weighted_f1(tb, pb, rng.integers(0, len(tb), size=(samples, len(tb))), k)
    alpha = (1.0 - level) / 2
    values = f1_b - f1_a
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]


def weighted_f1(y_true: Sequence[str], y_pred: Sequence[str]) -> float:
    """Sklearn's weighted F1 (labels present in ``y_true``)."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="weighted", zero_division=0))


def expected_calibration_error(correct: np.ndarray, confidence: np.ndarray, bins: int) -> Calibration:
    """ECE over equal-width confidence bins, with the per-bin table for a reliability diagram."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    table: list[CalibrationBin] = []
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        mask = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        if not mask.any():
            continue
        acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
        ece += mask.mean() * abs(acc - conf)
        table.append(
            {
                "low": float(lo),
                "high": float(hi),
                "count": int(mask.sum()),
                "accuracy": acc,
                "confidence": conf,
            }
        )
    return {"ece": float(ece), "bins": table}


def bootstrap_ece_ci(
    correct: np.ndarray, confidence: np.ndarray, bins: int, *, samples: int, seed: int, level: float = 0.95
) -> list[float] | None:
    """Percentile bootstrap interval of :func:`expected_calibration_error` over resampled rows.

    ECE is ``sum over bins |sum(correct - confidence)| / n``; one ``bincount`` over (resample, bin)
    gives every resample's bin sums at once.
    """
    n = len(confidence)
    if samples <= 0 or n == 0:
        return None
    which = np.clip(np.ceil(np.asarray(confidence) * bins).astype(int) - 1, 0, bins - 1)
    gap = np.asarray(correct, dtype=np.float64) - np.asarray(confidence, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    flat = (which[idx] + bins * np.arange(samples)[:, None]).ravel()
    sums = np.bincount(flat, weights=gap[idx].ravel(), minlength=samples * bins).reshape(samples, bins)
    values = np.abs(sums).sum(axis=1) / n
    alpha = (1.0 - level) / 2
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))]


def calibration_report(
    proba: np.ndarray, y_true: Sequence[str], labels: Sequence[str], cfg: EvalConfig
) -> Calibration:
    """ECE and reliability bins of the top tag's confidence, with a bootstrap interval."""
    confidence = proba.max(axis=1)
    correct = np.array([labels[i] == t for i, t in zip(proba.argmax(axis=1), y_true, strict=True)])
    found = expected_calibration_error(correct, confidence, cfg.calibration_bins)
    found["ece_ci95"] = bootstrap_ece_ci(
        correct, confidence, cfg.calibration_bins, samples=cfg.bootstrap_samples, seed=cfg.seed
    )
    return found


def slice_masks(texts: Sequence[str], *, short_text_words: int) -> dict[str, np.ndarray]:
    """Boolean row masks of the evaluation slices, computed from the input text only."""
    return {
        "short_text": np.array([count_words(t) < short_text_words for t in texts], dtype=bool),
        "nlp_llm": np.array([bool(NLP_LLM_PATTERN.search(t)) for t in texts], dtype=bool),
    }


def compute_report(
    y_true: Sequence[str],
    proba: np.ndarray,
    texts: Sequence[str],
    labels: Sequence[str],
    cfg: EvalConfig,
    *,
    raw: np.ndarray | None = None,
) -> EvalReport:
    """The full evaluation report as plain JSON-ready data.

    ``proba`` are the probabilities answered with (calibrated, when the model is) and ``cfg.threshold``
    the abstention threshold; ``raw``, when given, are the model's own probabilities, scored beside.
    """
    from sklearn.metrics import confusion_matrix

    y_true = list(y_true)
    y_pred, abstained = apply_threshold(proba, labels, cfg.threshold)
    report = classification_scores(y_true, y_pred, labels)
    report["overall"]["f1_ci95"] = bootstrap_ci(y_true, y_pred, samples=cfg.bootstrap_samples, seed=cfg.seed)
    report["overall"]["abstained"] = int(abstained.sum())
    slices: dict[str, SliceScores] = {}
    for name, mask in slice_masks(texts, short_text_words=cfg.short_text_words).items():
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            slices[name] = {"num_samples": 0, "f1": None, "precision": None, "recall": None}
            continue
        truth, pred = [y_true[i] for i in idx], [y_pred[i] for i in idx]
        scores = classification_scores(truth, pred, labels)["overall"]
        slices[name] = {
            "precision": scores["precision"],
            "recall": scores["recall"],
            "f1": scores["f1"],
            "num_samples": scores["num_samples"],
        }
    report["slices"] = slices
    report["calibration"] = calibration_report(proba, y_true, labels, cfg)
    if raw is not None:
        raw_scores = classification_scores(y_true, [labels[i] for i in raw.argmax(axis=1)], labels)
        report["raw"] = {
            "f1": raw_scores["overall"]["f1"],
            "macro_f1": raw_scores["overall"]["macro_f1"],
            "per_class_f1": {label: scores["f1"] for label, scores in raw_scores["per_class"].items()},
            "calibration": calibration_report(raw, y_true, labels, cfg),
        }
    report["confusion_matrix"] = {
        "labels": list(labels),
        "matrix": confusion_matrix(y_true, y_pred, labels=list(labels)).tolist(),
    }
    report["threshold"] = cfg.threshold
    # Row by row, so a gate can compare two models on the same rows (paired), not only their totals.
    report["rows"] = {"truth": y_true, "predicted": list(y_pred)}
    return report
