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
    """Evaluate a loaded predictor on a validated, labelled frame."""
    from tagops.metrics import compute_report

    texts = predictor.texts(frame["title"].tolist(), frame["description"].tolist())
    proba = predictor.model.predict_proba(texts)
    report = compute_report(frame["tag"].tolist(), proba, texts, predictor.model.labels, cfg)
    report["model"] = predictor.describe()
    return report
