"""Calibration: temperature scaling, the abstention threshold rule, and how a saved calibration is used."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tagops import LABELS
from tagops.config import CalibrationConfig, EvalConfig
from tagops.inference.predictor import Predictor
from tagops.metrics import bootstrap_ece_ci, compute_report, expected_calibration_error
from tagops.models.calibration import (
    CALIBRATION_FILE,
    Calibration,
    apply_temperature,
    choose_threshold,
    fit_calibration,
    fit_temperature,
    read_calibration,
    write_calibration,
)
from tagops.workloads.calibrate import calibrate_stage, carry_calibration_stage
from tagops.workloads.evaluate import evaluate_predictor

from .conftest import fit_rules_model, make_projects

pytestmark = pytest.mark.unit


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return out


def sampled(rows: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True probabilities from random logits, and labels drawn from them."""
    rng = np.random.default_rng(seed)
    true = softmax(rng.normal(0.0, 2.0, size=(rows, 4)))
    truth = np.array([rng.choice(4, p=row) for row in true])
    return true, truth


def test_temperature_keeps_the_top_tag_and_normalises() -> None:
    proba = softmax(np.random.default_rng(1).normal(size=(50, 4)))
    for temperature in (0.3, 1.0, 4.0):
        scaled = apply_temperature(proba, temperature)
        assert np.allclose(scaled.sum(axis=1), 1.0)
        assert (scaled.argmax(axis=1) == proba.argmax(axis=1)).all()
    assert np.allclose(apply_temperature(proba, 1.0), proba)
    assert (apply_temperature(proba, 3.0).max(axis=1) < proba.max(axis=1) + 1e-12).all()


def test_fit_temperature_undoes_known_over_and_under_confidence() -> None:
    true, truth = sampled(4000)
    logits = np.log(true)
    over = softmax(logits * 2.0)  # too sure: the fitted temperature is about 2
    under = softmax(logits * 0.5)  # too unsure: about 0.5
    assert fit_temperature(over, truth) == pytest.approx(2.0, rel=0.15)
    assert fit_temperature(under, truth) == pytest.approx(0.5, rel=0.15)


def test_fit_calibration_lowers_ece_of_an_under_confident_model() -> None:
    true, truth = sampled(3000, seed=3)
    under = softmax(np.log(true) * 0.4)
    fitted = fit_calibration(under, [LABELS[i] for i in truth], LABELS)
    assert fitted.temperature < 1.0
    assert fitted.ece["calibrated"] < fitted.ece["raw"] / 2
    assert fitted.nll["calibrated"] < fitted.nll["raw"]
    assert fitted.num_samples == 3000


def test_threshold_rule_abstains_when_unsure_answers_are_mostly_other() -> None:
    other = LABELS.index("other")
    # Sure rows are right; unsure rows (confidence 0.4) are `other` in truth but predicted as vision.
    sure = np.tile([0.9, 0.04, 0.03, 0.03], (40, 1))
    unsure = np.tile([0.4, 0.3, 0.15, 0.15], (10, 1))
    proba = np.vstack([sure, unsure])
    truth = [LABELS[0]] * 40 + [LABELS[other]] * 10
    threshold, scores = choose_threshold(proba, truth, LABELS, tolerance=0.0)
    assert threshold is not None and 0.4 < threshold <= 0.9
    assert scores[str(threshold)] == max(scores.values())
    assert scores["0.0"] < max(scores.values())


def test_threshold_rule_never_abstains_when_abstaining_costs() -> None:
    proba = np.vstack([np.tile([0.9, 0.04, 0.03, 0.03], (40, 1)), np.tile([0.4, 0.3, 0.15, 0.15], (10, 1))])
    truth = [LABELS[0]] * 50  # unsure rows are right too: sending them to `other` is a loss
    threshold, scores = choose_threshold(proba, truth, LABELS, tolerance=0.0)
    assert threshold is None or threshold <= 0.4  # the highest threshold that abstains on no row
    assert scores[str(threshold or 0.0)] == max(scores.values())
    assert max(scores.values()) > scores["0.9"]


def test_calibration_file_round_trip_and_errors(tmp_path: Path) -> None:
    assert read_calibration(tmp_path) is None
    saved = Calibration(temperature=0.7, threshold=0.45, num_samples=10, ece={"raw": 0.1, "calibrated": 0.02})
    write_calibration(tmp_path, saved)
    assert read_calibration(tmp_path) == saved
    assert saved.tags()["calibration.threshold"] == "0.45"
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"temperature": -1}), encoding="utf-8")
    with pytest.raises(ValueError, match="'temperature' must be positive"):
        read_calibration(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps({"temperature": 1, "threshold": 2}), encoding="utf-8")
    with pytest.raises(ValueError, match="'threshold'"):
        read_calibration(tmp_path)
    (tmp_path / CALIBRATION_FILE).write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match=CALIBRATION_FILE):
        read_calibration(tmp_path)


def test_bootstrap_ece_interval_brackets_the_point_estimate() -> None:
    true, truth = sampled(500, seed=5)
    proba = softmax(np.log(true) * 0.5)
    correct, confidence = proba.argmax(axis=1) == truth, proba.max(axis=1)
    point = expected_calibration_error(correct, confidence, 10)["ece"]
    low, high = bootstrap_ece_ci(correct, confidence, 10, samples=500, seed=1) or [0.0, 0.0]
    assert low <= point <= high
    assert high - low > 0.005
    assert bootstrap_ece_ci(correct, confidence, 10, samples=0, seed=1) is None


# ------------------------------------------------------------------------------- saved and served
@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return fit_rules_model(tmp_path / "rules")


def test_predictor_uses_the_models_threshold_unless_overridden(model_dir: Path) -> None:
    assert Predictor.from_directory(model_dir).threshold_source == "none"
    write_calibration(model_dir, Calibration(temperature=2.0, threshold=0.6))
    own = Predictor.from_directory(model_dir)
    assert (own.threshold, own.threshold_source) == (0.6, "model")
    assert own.describe()["temperature"] == 2.0
    overridden = Predictor.from_directory(model_dir, threshold=0.3)
    assert (overridden.threshold, overridden.threshold_source) == (0.3, "override")
    never = Predictor.from_directory(model_dir, threshold=0.0)
    assert never.threshold is None
    texts = ["Image segmentation with a camera"]
    raw = own.model.predict_proba(texts)
    assert np.allclose(own.proba(texts), apply_temperature(raw, 2.0))
    (answer,) = own.predict(["Image segmentation"], ["with a camera"])
    assert answer["confidence"] == pytest.approx(float(apply_temperature(raw, 2.0).max()), abs=1e-6)


def test_evaluation_reports_as_served_and_raw(model_dir: Path) -> None:
    frame = make_projects(6, offset=3)
    write_calibration(model_dir, Calibration(temperature=5.0, threshold=0.9))  # abstains on everything
    report = evaluate_predictor(Predictor.from_directory(model_dir), frame, EvalConfig(bootstrap_samples=50))
    assert report["threshold"] == 0.9
    assert report["overall"]["abstained"] == len(frame)
    assert report["raw"]["f1"] > report["overall"]["f1"]
    assert set(report["raw"]["per_class_f1"]) == set(LABELS)
    assert report["calibration"]["ece_ci95"] is not None
    assert report["raw"]["calibration"]["ece"] != report["calibration"]["ece"]


def test_compute_report_without_raw_has_no_raw_section() -> None:
    proba = np.tile([0.7, 0.1, 0.1, 0.1], (4, 1))
    report = compute_report([LABELS[0]] * 4, proba, ["a b"] * 4, LABELS, EvalConfig(bootstrap_samples=0))
    assert "raw" not in report
    assert report["calibration"]["ece_ci95"] is None


def test_calibrate_stage_saves_and_carry_copies(model_dir: Path, tmp_path: Path) -> None:
    val = make_projects(5, offset=7)
    found = calibrate_stage(model_dir, val, CalibrationConfig(), EvalConfig())
    assert found["enabled"] and found["temperature"] > 0
    saved = read_calibration(model_dir)
    assert saved is not None and saved.temperature == found["temperature"]
    refit = tmp_path / "refit"
    refit.mkdir()
    assert carry_calibration_stage(refit, model_dir) == refit
    assert read_calibration(refit) == saved
    assert calibrate_stage(model_dir, val, CalibrationConfig(enabled=False), EvalConfig()) == {
        "enabled": False
    }
    assert read_calibration(model_dir) is None
    carry_calibration_stage(refit, model_dir)
    assert read_calibration(refit) is None


def test_fit_calibration_refuses_unknown_or_missing_labels() -> None:
    proba = np.tile([0.7, 0.1, 0.1, 0.1], (2, 1))
    with pytest.raises(ValueError, match="not among the model's labels"):
        fit_calibration(proba, ["robotics", LABELS[0]], LABELS)
    with pytest.raises(ValueError, match="no"):
        fit_calibration(proba[:0], [], LABELS)


def test_a_gain_within_the_tolerance_does_not_make_the_model_abstain() -> None:
    # 199 sure, right answers; one unsure vision answer that is `other` in truth: abstaining gains one row.
    proba = np.vstack([np.tile([0.9, 0.04, 0.03, 0.03], (199, 1)), [[0.45, 0.25, 0.15, 0.15]]])
    truth = [LABELS[0]] * 199 + ["other"]
    strict, scores = choose_threshold(proba, truth, LABELS, tolerance=0.0)
    assert strict is not None and 0.45 < strict <= 0.9  # the lowest threshold with the (tiny) gain
    gain = max(scores.values()) - scores["0.0"]
    assert 0 < gain < 0.5
    tolerant, _ = choose_threshold(proba, truth, LABELS, tolerance=gain + 1e-9)
    assert tolerant is None
