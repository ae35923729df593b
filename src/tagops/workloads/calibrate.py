"""Calibrating a trained model on the validation split: its temperature and its abstention threshold.

A stage of :func:`tagops.workloads.train.training_plan`, after fitting and before evaluation, so every
report, the gate and serving see the model as it will answer. A model refit on all rows after validation
carries the calibration its recipe was measured with (:func:`carry_calibration_stage`): the validation
rows are then part of its training data and could not measure it again.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from tagops.config import CalibrationConfig, EvalConfig

logger = logging.getLogger(__name__)


def calibrate_stage(
    model_dir: Path, val: pd.DataFrame, calibration: CalibrationConfig, evaluation: EvalConfig
) -> dict[str, Any]:
    """Fit the model's calibration on ``val`` and save it into ``model_dir``; returns it as a dict.

    With ``calibration.enabled`` false nothing is fitted or saved, and the dict says so.
    """
    from tagops.data.clean import build_text
    from tagops.models.base import load_model
    from tagops.models.calibration import CALIBRATION_FILE, fit_calibration, write_calibration

    model_dir = Path(model_dir)
    if not calibration.enabled:
        (model_dir / CALIBRATION_FILE).unlink(missing_ok=True)
        return {"enabled": False}
    model = load_model(model_dir)
    texts = [build_text(t, d) for t, d in zip(val["title"], val["description"], strict=True)]
    fitted = fit_calibration(
        model.predict_proba(texts),
        val["tag"].tolist(),
        model.labels,
        tolerance=calibration.threshold_tolerance,
        bins=evaluation.calibration_bins,
    )
    write_calibration(model_dir, fitted)
    logger.info(
        "%s: temperature %.3f, abstain below %s; validation ECE %.3f -> %.3f",
        model.family,
        fitted.temperature,
        "never" if fitted.threshold is None else f"{fitted.threshold:.2f}",
        fitted.ece["raw"],
        fitted.ece["calibrated"],
    )
    return {"enabled": True, **fitted.to_dict()}


def carry_calibration_stage(model_dir: Path, val_model_dir: Path) -> Path:
    """Copy the calibration of the validated model to the model refit from its recipe; returns the folder."""
    from tagops.models.calibration import CALIBRATION_FILE

    model_dir, source = Path(model_dir), Path(val_model_dir) / CALIBRATION_FILE
    if model_dir == Path(val_model_dir):
        return model_dir
    if source.is_file():
        shutil.copyfile(source, model_dir / CALIBRATION_FILE)
    else:
        (model_dir / CALIBRATION_FILE).unlink(missing_ok=True)
    return model_dir
