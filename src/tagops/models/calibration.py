"""A model's calibration: a temperature for its probabilities and the confidence below which it abstains.

Both are fitted on the validation split after training and saved as ``calibration.json`` in the model
folder, beside ``model.json``, so every path that loads the model (evaluation, the gate, batch and
online serving) answers with the same probabilities and the same abstentions. The family's own
``predict_proba`` stays raw; :class:`~tagops.inference.predictor.Predictor` applies the calibration.

Temperature scaling divides the log-probabilities by one number ``T`` chosen to minimise the negative
log-likelihood of the validation labels: it moves confidence toward what the model's accuracy is, and
never changes which tag is on top (so raw and calibrated F1 without abstention are the same).

The abstention threshold follows one stated rule, :data:`THRESHOLD_RULE`: on validation, with calibrated
probabilities, the lowest threshold whose macro F1 as served is within ``tolerance`` of the best
threshold's. Abstaining sends an unsure answer to ``other``, the tag of everything outside the three
topics; the model abstains only as far as validation shows that it gains by it (a threshold that merely
costs nothing on validation has no evidence for it, and on the holdout it cost the families F1:
``benchmarks/quality.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_FILE = "calibration.json"
THRESHOLD_RULE = "lowest threshold within tolerance of the best validation macro F1 as served"
#: Thresholds tried (0: never abstain). With four tags the top probability is at least 0.25, so
#: thresholds up to 0.25 would never abstain.
THRESHOLD_GRID = (0.0, *np.round(np.arange(0.30, 0.951, 0.05), 2).tolist())
#: Where the temperature is searched (log-uniform bounds).
TEMPERATURE_BOUNDS = (0.05, 20.0)
_EPS = 1e-12


@dataclass(frozen=True)
class Calibration:
    """What :func:`fit_calibration` chose and the validation evidence behind it."""

    temperature: float
    threshold: float | None
    rule: str = THRESHOLD_RULE
    tolerance: float = 0.0
    num_samples: int = 0
    #: Validation negative log-likelihood and expected calibration error, before and after.
    nll: dict[str, float] = field(default_factory=dict)
    ece: dict[str, float] = field(default_factory=dict)
    #: Validation macro F1 as served at every threshold tried (``"0.0"``: never abstain).
    macro_f1_by_threshold: dict[str, float] = field(default_factory=dict)

    def apply(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for raw ones (rows sum to 1; the top tag is unchanged)."""
        return apply_temperature(proba, self.temperature)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)

    def tags(self) -> dict[str, str]:
        """The registry tags that say how the model answers as served."""
        return {
            "calibration.temperature": f"{self.temperature:.4f}",
            "calibration.threshold": "none" if self.threshold is None else f"{self.threshold:.2f}",
            "calibration.val_ece": f"{self.ece.get('calibrated', float('nan')):.4f}",
        }


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(p) / T)`` row by row; ``T > 1`` softens, ``T < 1`` sharpens."""
    logits = np.log(np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    scaled: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return scaled


def negative_log_likelihood(proba: np.ndarray, truth: np.ndarray) -> float:
    """Mean ``-log p(true tag)`` over the rows (``truth`` as column indices)."""
    picked = np.clip(proba[np.arange(len(truth)), truth], _EPS, 1.0)
    return float(-np.log(picked).mean())


def fit_temperature(proba: np.ndarray, truth: np.ndarray) -> float:
    """The temperature minimising the validation NLL (bounded search over ``log T``)."""
    from scipy.optimize import minimize_scalar

    low, high = np.log(TEMPERATURE_BOUNDS[0]), np.log(TEMPERATURE_BOUNDS[1])
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(apply_temperature(proba, float(np.exp(log_t))), truth),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(found.x))


def choose_threshold(
    proba: np.ndarray, y_true: Sequence[str], labels: Sequence[str], *, tolerance: float
) -> tuple[float | None, dict[str, float]]:
    """The abstention threshold by :data:`THRESHOLD_RULE`, and macro F1 at every threshold tried."""
    from tagops.metrics import apply_threshold, classification_scores

    scores: dict[str, float] = {}
    for threshold in THRESHOLD_GRID:
        predicted, _ = apply_threshold(proba, labels, threshold or None)
        scores[str(threshold)] = float(
            classification_scores(y_true, predicted, labels)["overall"]["macro_f1"]
        )
    best = max(scores.values())
    chosen = min(float(t) for t, score in scores.items() if score >= best - tolerance)
    return (chosen or None), scores


def fit_calibration(
    proba: np.ndarray,
    y_true: Sequence[str],
    labels: Sequence[str],
    *,
    tolerance: float = 0.005,
    bins: int = 10,
) -> Calibration:
    """Fit the temperature, then choose the threshold on the calibrated validation probabilities."""
    from tagops.metrics import expected_calibration_error

    if len(y_true) == 0:
        raise ValueError("calibration needs labelled validation rows; got none")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(y_true) - set(index))
    if unknown:
        raise ValueError(f"validation labels {unknown} are not among the model's labels {list(labels)}")
    truth = np.array([index[t] for t in y_true])
    temperature = fit_temperature(proba, truth)
    calibrated = apply_temperature(proba, temperature)
    threshold, by_threshold = choose_threshold(calibrated, y_true, labels, tolerance=tolerance)

    def ece(p: np.ndarray) -> float:
        return round(expected_calibration_error(p.argmax(axis=1) == truth, p.max(axis=1), bins)["ece"], 6)

    return Calibration(
        temperature=round(temperature, 6),
        threshold=threshold,
        tolerance=tolerance,
        num_samples=len(truth),
        nll={
            "raw": round(negative_log_likelihood(proba, truth), 6),
            "calibrated": round(negative_log_likelihood(calibrated, truth), 6),
        },
        ece={"raw": ece(proba), "calibrated": ece(calibrated)},
        macro_f1_by_threshold={k: round(v, 6) for k, v in by_threshold.items()},
    )


def write_calibration(directory: Path, calibration: Calibration) -> Path:
    """Save ``calibration.json`` into a model folder; returns its path."""
    path = directory / CALIBRATION_FILE
    path.write_text(json.dumps(calibration.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
    return path


def read_calibration(directory: Path) -> Calibration | None:
    """The calibration saved in a model folder; ``None`` for a model saved without one."""
    path = directory / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        temperature = float(data["temperature"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a calibration file ({error!r})") from None
    if not temperature > 0:
        raise ValueError(f"{path}: field 'temperature' must be positive, got {temperature}")
    threshold = data.get("threshold")
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"{path}: field 'threshold' must lie in [0, 1], got {threshold}")
    known = set(Calibration.__dataclass_fields__)
    return Calibration(**{k: v for k, v in data.items() if k in known})
