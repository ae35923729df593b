"""Evaluating a model on labelled data: ``tagops evaluate --model URI --output report.json``.

The report's metrics are computed in :mod:`tagops.metrics`; this module runs the model on the frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from tagops.config import EvalConfig
    from tagops.inference.predictor import Predictor
    from tagops.metrics import EvalReport


def evaluate_predictor(predictor: Predictor, frame: pd.DataFrame, cfg: EvalConfig) -> EvalReport:
    """Evaluate a loaded predictor on a validated, labelled frame, as it answers when served.

    The scores use the predictor's calibrated probabilities and its abstention threshold (the model's
    own unless the caller overrode it); ``raw`` beside them scores the top tag of the model's own
    probabilities without abstaining, and ``calibration_raw`` their reliability.
    """
    from tagops.metrics import compute_report

    texts = predictor.texts(frame["title"].tolist(), frame["description"].tolist())
    raw = predictor.model.predict_proba(texts)
    proba = raw if predictor.calibration is None else predictor.calibration.apply(raw)
    served = cfg.model_copy(update={"threshold": predictor.threshold})
    report = compute_report(frame["tag"].tolist(), proba, texts, predictor.model.labels, served, raw=raw)
    report["model"] = predictor.describe()
    return report
