"""Evaluation metrics: bootstrap interval, threshold, report shape, slices, calibration, plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from tagops import LABELS
from tagops.config import EvalConfig
from tagops.metrics import (
    apply_threshold,
    bootstrap_ci,
    classification_scores,
    compute_report,
    expected_calibration_error,
    slice_masks,
    weighted_f1,
)
from tagops.reports import save_plots, write_report

pytestmark = pytest.mark.unit


def random_labels(seed: int, n: int, *, noise: float = 0.35) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    truth = rng.choice(LABELS, size=n, p=[0.4, 0.2, 0.3, 0.1])
    flip = rng.random(n) < noise
    pred = np.where(flip, rng.choice(LABELS, size=n), truth)
    return truth.tolist(), pred.tolist()


def reference_ci(y_true: list[str], y_pred: list[str], *, samples: int, seed: int) -> list[float]:
    """The slow, obvious computation: sklearn weighted F1 on each resample."""
    truth, pred = np.array(y_true), np.array(y_pred)
    idx = np.random.default_rng(seed).integers(0, len(truth), size=(samples, len(truth)))
    values = [f1_score(truth[i], pred[i], average="weighted", zero_division=0) for i in idx]
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]


@pytest.mark.parametrize(("seed", "n", "samples"), [(0, 60, 200), (1, 25, 150), (7, 9, 300), (3, 120, 100)])
def test_bootstrap_ci_matches_sklearn_reference(seed: int, n: int, samples: int) -> None:
    y_true, y_pred = random_labels(seed, n)
    fast = bootstrap_ci(y_true, y_pred, samples=samples, seed=seed + 100)
    slow = reference_ci(y_true, y_pred, samples=samples, seed=seed + 100)
    assert fast is not None
    assert np.allclose(fast, slow, atol=1e-12)


def test_bootstrap_ci_with_a_predicted_label_never_true() -> None:
    y_true = ["mlops"] * 6 + ["other"] * 4
    y_pred = ["mlops"] * 4 + ["computer-vision"] * 2 + ["other"] * 3 + ["mlops"]
    assert np.allclose(
        bootstrap_ci(y_true, y_pred, samples=300, seed=5), reference_ci(y_true, y_pred, samples=300, seed=5)
    )


def test_bootstrap_ci_is_seeded() -> None:
    y_true, y_pred = random_labels(2, 50)
    assert bootstrap_ci(y_true, y_pred, samples=100, seed=1) == bootstrap_ci(
        y_true, y_pred, samples=100, seed=1
    )
    assert bootstrap_ci(y_true, y_pred, samples=100, seed=1) != bootstrap_ci(
        y_true, y_pred, samples=100, seed=2
    )


def test_bootstrap_ci_disabled_or_empty() -> None:
    assert bootstrap_ci(["mlops"], ["mlops"], samples=0, seed=1) is None
    assert bootstrap_ci([], [], samples=10, seed=1) is None


def test_perfect_predictions_have_a_degenerate_interval() -> None:
    y_true, _ = random_labels(4, 30)
    assert bootstrap_ci(y_true, y_true, samples=50, seed=0) == [1.0, 1.0]


def test_apply_threshold_abstains_to_other_below_threshold() -> None:
    proba = np.array(
        [
            [0.70, 0.10, 0.10, 0.10],  # confident computer-vision
            [0.30, 0.40, 0.20, 0.10],  # unsure mlops
            [0.05, 0.05, 0.50, 0.40],  # exactly at the threshold: kept
            [0.10, 0.20, 0.25, 0.45],  # unsure "other" stays "other", and counts as abstained
        ]
    )
    predicted, abstained = apply_threshold(proba, LABELS, 0.5)
    assert predicted == ["computer-vision", "other", "natural-language-processing", "other"]
    assert abstained.tolist() == [False, True, False, True]
    predicted, abstained = apply_threshold(proba, LABELS, None)
    assert predicted == ["computer-vision", "mlops", "natural-language-processing", "other"]
    assert not abstained.any()


def test_classification_scores_agree_with_sklearn() -> None:
    y_true, y_pred = random_labels(11, 80)
    scores = classification_scores(y_true, y_pred, LABELS)
    assert scores["overall"]["f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert weighted_f1(y_true, y_pred) == pytest.approx(scores["overall"]["f1"])
    assert scores["overall"]["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert scores["overall"]["accuracy"] == pytest.approx(np.mean(np.array(y_true) == np.array(y_pred)))
    per_class = f1_score(y_true, y_pred, labels=list(LABELS), average=None)
    for label, value in zip(LABELS, per_class, strict=True):
        assert scores["per_class"][label]["f1"] == pytest.approx(value)
        assert scores["per_class"][label]["num_samples"] == y_true.count(label)


def probabilities_for(y_pred: list[str], seed: int) -> np.ndarray:
    """Probabilities whose argmax is ``y_pred``."""
    rng = np.random.default_rng(seed)
    proba = rng.random((len(y_pred), len(LABELS))) * 0.5
    for i, label in enumerate(y_pred):
        proba[i, LABELS.index(label)] = 1.0
    return proba / proba.sum(axis=1, keepdims=True)


TEXTS = [
    "A transformer for translation",  # nlp_llm; 4 words: short
    "Fine-tuning BERT models on tiny data sets for sentiment classification",
    "Image segmentation with a convolutional network applied to satellite pictures",
    "Serving LLMs in production",  # nlp_llm, short
    "Docker images for model deployment with a full monitoring stack included",
    "Graph neural networks for recommendation systems at a very large scale",
]


def test_compute_report_structure_and_consistency() -> None:
    y_true = [
        "natural-language-processing",
        "natural-language-processing",
        "computer-vision",
        "mlops",
        "mlops",
        "other",
    ]
    y_pred = ["natural-language-processing", "mlops", "computer-vision", "mlops", "mlops", "other"]
    cfg = EvalConfig(bootstrap_samples=50, short_text_words=8, calibration_bins=5)
    report = compute_report(y_true, probabilities_for(y_pred, 0), TEXTS, LABELS, cfg)
    overall = report["overall"]
    assert {"precision", "recall", "f1", "macro_f1", "accuracy", "num_samples", "f1_ci95"} <= set(overall)
    assert overall["num_samples"] == len(y_true)
    assert overall["f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    assert overall["f1_ci95"] == bootstrap_ci(y_true, y_pred, samples=50, seed=cfg.seed)
    assert overall["abstained"] == 0
    assert set(report["per_class"]) == set(LABELS)
    assert set(report["slices"]) == {"short_text", "nlp_llm"}
    assert report["slices"]["short_text"]["num_samples"] == 2
    assert report["slices"]["nlp_llm"]["num_samples"] == 3
    assert report["slices"]["nlp_llm"]["f1"] == pytest.approx(
        f1_score([y_true[i] for i in (0, 1, 3)], [y_pred[i] for i in (0, 1, 3)], average="weighted")
    )
    assert 0.0 <= report["calibration"]["ece"] <= 1.0
    assert sum(b["count"] for b in report["calibration"]["bins"]) == len(y_true)
    matrix = np.array(report["confusion_matrix"]["matrix"])
    assert report["confusion_matrix"]["labels"] == list(LABELS)
    assert matrix.shape == (4, 4)
    assert matrix.sum() == len(y_true)
    assert np.trace(matrix) == sum(t == p for t, p in zip(y_true, y_pred, strict=True))
    assert report["threshold"] is None


def test_compute_report_applies_the_threshold() -> None:
    y_true = ["mlops", "mlops", "other", "computer-vision"]
    proba = np.array(
        [[0.1, 0.8, 0.05, 0.05], [0.3, 0.35, 0.3, 0.05], [0.3, 0.4, 0.1, 0.2], [0.9, 0.0, 0.1, 0.0]]
    )
    report = compute_report(
        y_true, proba, ["a b"] * 4, LABELS, EvalConfig(threshold=0.5, bootstrap_samples=0)
    )
    assert report["overall"]["abstained"] == 2
    assert report["overall"]["f1_ci95"] is None
    # Row 2 abstained to "other" though its truth is mlops; row 3 abstained onto its true label.
    assert report["overall"]["accuracy"] == pytest.approx(3 / 4)
    assert report["threshold"] == 0.5


def test_empty_slice_is_reported_with_no_scores() -> None:
    report = compute_report(
        ["mlops"] * 2,
        probabilities_for(["mlops"] * 2, 1),
        ["deploying models " * 5] * 2,
        LABELS,
        EvalConfig(bootstrap_samples=0),
    )
    assert report["slices"]["short_text"] == {"num_samples": 0, "f1": None, "precision": None, "recall": None}
    assert report["slices"]["nlp_llm"]["num_samples"] == 0


def test_slices_come_from_text_not_labels() -> None:
    cfg = EvalConfig(bootstrap_samples=0)
    rng = np.random.default_rng(0)
    proba = probabilities_for(["mlops"] * len(TEXTS), 2)
    sizes = set()
    for _ in range(5):
        y_true = rng.choice(LABELS, size=len(TEXTS)).tolist()
        report = compute_report(y_true, proba, TEXTS, LABELS, cfg)
        sizes.add((report["slices"]["nlp_llm"]["num_samples"], report["slices"]["short_text"]["num_samples"]))
    assert sizes == {(3, 2)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Transformers for everyone", True),
        ("a large language model", True),
        ("GPT-4 prompts", True),
        ("BERTopic on tweets", True),
        ("Fine-tuning LLMs", True),
        ("A gpt2 baseline", True),
        ("Object detection with YOLO", False),
        ("language models explained", True),
        ("robert's notebook", False),
    ],
)
def test_nlp_llm_pattern(text: str, expected: bool) -> None:
    assert bool(slice_masks([text], short_text_words=8)["nlp_llm"][0]) is expected


def test_short_text_slice_counts_raw_words() -> None:
    masks = slice_masks(["one two three", "one two three four five"], short_text_words=4)
    assert masks["short_text"].tolist() == [True, False]


def test_ece_is_zero_when_calibrated() -> None:
    # Confidence 1.0 and always right; confidence 0.5 and right half the time.
    confidence = np.array([1.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    correct = np.array([True, True, True, False, True, False])
    result = expected_calibration_error(correct, confidence, bins=10)
    assert result["ece"] == pytest.approx(0.0)
    assert [b["count"] for b in result["bins"]] == [4, 2]


def test_ece_of_an_overconfident_model() -> None:
    confidence = np.full(10, 0.9)
    correct = np.array([True] * 5 + [False] * 5)
    result = expected_calibration_error(correct, confidence, bins=10)
    assert result["ece"] == pytest.approx(abs(0.5 - 0.9))
    (only,) = result["bins"]
    assert only["accuracy"] == pytest.approx(0.5)
    assert only["confidence"] == pytest.approx(0.9)


def test_ece_weights_bins_by_their_share() -> None:
    confidence = np.array([0.95] * 4 + [0.55] * 6)
    correct = np.array([True, True, True, False] + [True] * 3 + [False] * 3)
    expected = 0.4 * abs(0.75 - 0.95) + 0.6 * abs(0.5 - 0.55)
    assert expected_calibration_error(correct, confidence, bins=10)["ece"] == pytest.approx(expected)


def test_report_calibration_through_compute_report() -> None:
    labels = ["mlops", "other"] * 4
    calibrated = np.tile([0.0, 0.5, 0.0, 0.5], (8, 1))  # argmax is mlops, right half the time
    overconfident = np.tile([0.0, 0.9, 0.0, 0.1], (8, 1))
    cfg = EvalConfig(bootstrap_samples=0)
    assert compute_report(labels, calibrated, ["x"] * 8, LABELS, cfg)["calibration"]["ece"] == pytest.approx(
        0.0
    )
    assert compute_report(labels, overconfident, ["x"] * 8, LABELS, cfg)["calibration"]["ece"] > 0.0


def test_save_plots_writes_three_pngs(tmp_path: Path) -> None:
    y_true, y_pred = random_labels(5, 40)
    report = compute_report(
        y_true, probabilities_for(y_pred, 3), ["x y"] * 40, LABELS, EvalConfig(bootstrap_samples=10)
    )
    paths = save_plots(report, tmp_path / "plots", prefix="r_")
    assert sorted(p.name for p in paths) == ["r_confusion_matrix.png", "r_per_class.png", "r_reliability.png"]
    for path in paths:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_write_report_writes_json_and_plots(tmp_path: Path) -> None:
    import json

    y_true, y_pred = random_labels(6, 20)
    report = compute_report(
        y_true, probabilities_for(y_pred, 4), ["x"] * 20, LABELS, EvalConfig(bootstrap_samples=10)
    )
    files = write_report(report, tmp_path / "out" / "holdout.json")
    assert files[0] == tmp_path / "out" / "holdout.json"
    assert json.loads(files[0].read_text())["overall"]["f1"] == pytest.approx(report["overall"]["f1"])
    assert {p.name for p in files[1:]} == {
        "holdout_confusion_matrix.png",
        "holdout_per_class.png",
        "holdout_reliability.png",
    }
