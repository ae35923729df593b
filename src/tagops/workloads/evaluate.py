"""Evaluating a model on labelled data: ``tagops evaluate --model URI --output report.json``.

The report's metrics are computed in :mod:`tagops.metrics`; this module runs the model on the frame.
``tagops evaluate --robustness`` also scores the model on transformed copies of the data
(:mod:`tagops.data.robustness`) and on the challenge set, whole and by style (``evaluate_robustness``).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import TYPE_CHECKING

from tagops.errors import TagopsError

if TYPE_CHECKING:
    import pandas as pd

    from tagops.config import EvalConfig
    from tagops.inference.predictor import Predictor
    from tagops.metrics import EvalReport, RobustnessReport, RobustnessSlice

#: The slice of the data as-is, and the one of the whole challenge set (its styles: ``challenge.<style>``).
HOLDOUT_SLICE = "holdout"
CHALLENGE_SLICE = "challenge"


def evaluate_predictor(predictor: Predictor, frame: pd.DataFrame, cfg: EvalConfig) -> EvalReport:
    """Evaluate a loaded predictor on a validated, labelled frame, as it answers when served.

    The scores use the predictor's calibrated probabilities and its abstention threshold: the model's
    own unless the predictor or ``cfg.threshold`` overrides it (``0``: never abstain). ``raw`` beside
    them scores the top tag of the model's own probabilities without abstaining, with their
    reliability before calibration.
    """
    from tagops.metrics import compute_report

    texts = predictor.texts(frame["title"].tolist(), frame["description"].tolist())
    raw = predictor.model.predict_proba(texts)
    proba = raw if predictor.calibration is None else predictor.calibration.apply(raw)
    threshold = predictor.threshold if cfg.threshold is None else (cfg.threshold or None)
    served = cfg.model_copy(update={"threshold": threshold})
    report = compute_report(frame["tag"].tolist(), proba, texts, predictor.model.labels, served, raw=raw)
    report["model"] = predictor.describe()
    return report


def robustness_slice_names() -> list[str]:
    """The slices ``evaluate_robustness`` can run: the data as-is, each transform, the challenge set."""
    from tagops.data.robustness import TRANSFORMS

    return [HOLDOUT_SLICE, *TRANSFORMS, CHALLENGE_SLICE]


def evaluate_robustness(
    predictor: Predictor,
    holdout: pd.DataFrame,
    cfg: EvalConfig,
    *,
    challenge: pd.DataFrame | None = None,
    slices: Collection[str] | None = None,
) -> RobustnessReport:
    """Score ``predictor`` on ``holdout`` as-is, on every transform of it and on the challenge set.

    Each slice is evaluated by ``evaluate_predictor`` under ``cfg`` (threshold, bootstrap); transforms are
    seeded with ``cfg.seed``. The challenge set (``tagops.data.labels.load_challenge()`` unless given)
    is scored whole (``challenge``) and by its ``style`` column (``challenge.<style>``). ``slices`` limits the
    run to some of ``robustness_slice_names()`` (``challenge`` covers its styles too; not loaded otherwise).

    Raises:
        TagopsError: for an unknown slice name, or a challenge frame without the columns it needs or with
            tags the model does not know.

    """
    from tagops.data.robustness import TRANSFORMS, transform_frame

    names = robustness_slice_names()
    wanted = list(names) if slices is None else list(slices)
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise TagopsError(f"unknown robustness slice {unknown[0]!r}; known: {', '.join(names)}")
    result: dict[str, RobustnessSlice] = {}
    if HOLDOUT_SLICE in wanted:
        result[HOLDOUT_SLICE] = _score(predictor, holdout, cfg, source=HOLDOUT_SLICE, dropped=0)
    for name in TRANSFORMS:
        if name in wanted:
            frame = transform_frame(holdout, name, cfg.seed)
            dropped = len(holdout) - len(frame)
            result[name] = _score(
                predictor, frame, cfg, source=HOLDOUT_SLICE, transform=name, dropped=dropped
            )
    if CHALLENGE_SLICE in wanted:
        frame = _check_challenge(load_default_challenge() if challenge is None else challenge, predictor)
        result[CHALLENGE_SLICE] = _score(predictor, frame, cfg, source=CHALLENGE_SLICE, dropped=0)
        if "style" in frame.columns:
            for style in sorted(frame["style"].fillna("").astype(str).unique(), key=slice_key):
                rows = frame[frame["style"].fillna("").astype(str) == style]
                key = f"{CHALLENGE_SLICE}.{slice_key(style)}"
                while key in result:  # two styles that differ only in case or punctuation
                    key += "_"
                result[key] = _score(predictor, rows, cfg, source=CHALLENGE_SLICE, style=style, dropped=0)
    scored = [(s["f1"], name) for name, s in result.items() if s["f1"] is not None]
    worst = min(scored, key=lambda pair: pair[0])[1] if scored else None
    return {"seed": cfg.seed, "slices": result, "worst_slice": worst}


def load_default_challenge() -> pd.DataFrame:
    """The challenge set shipped with the package (``tagops.data.labels.load_challenge``)."""
    from tagops.data.labels import load_challenge

    frame: pd.DataFrame = load_challenge()
    return frame


def slice_key(style: str) -> str:
    """A style as part of a slice name (lowercase letters, digits, ``_`` and ``-``; MLflow accepts it)."""
    return re.sub(r"[^a-z0-9_-]+", "_", style.casefold()).strip("_") or "unnamed"


def _check_challenge(frame: pd.DataFrame, predictor: Predictor) -> pd.DataFrame:
    """The challenge frame with blank text cells as ``""``, after checking its columns and tags."""
    missing = [column for column in ("title", "description", "tag") if column not in frame.columns]
    if missing:
        raise TagopsError(f"challenge set: no column {missing[0]!r}")
    labels = set(predictor.model.labels)
    unknown = [(i, tag) for i, tag in enumerate(frame["tag"].tolist(), start=1) if tag not in labels]
    if unknown:
        row, tag = unknown[0]
        raise TagopsError(
            f"challenge set, row {row}, column 'tag': {tag!r} is not one of the model's labels "
            f"({', '.join(sorted(labels))})"
            + (f" (and {len(unknown) - 1} more rows)" if len(unknown) > 1 else "")
        )
    result = frame.copy()
    for column in ("title", "description"):
        result[column] = result[column].fillna("").astype(str)
    return result


def _score(
    predictor: Predictor,
    frame: pd.DataFrame,
    cfg: EvalConfig,
    *,
    source: str,
    dropped: int,
    transform: str | None = None,
    style: str | None = None,
) -> RobustnessSlice:
    """One slice's scores, from the report ``evaluate_predictor`` makes on ``frame`` (none without rows)."""
    if len(frame) == 0:
        return {
            "source": source,
            "transform": transform,
            "style": style,
            "num_samples": 0,
            "dropped": dropped,
            "f1": None,
            "f1_ci95": None,
            "macro_f1": None,
            "per_class_f1": {},
            "abstained": 0,
            "ece": None,
        }
    report = evaluate_predictor(predictor, frame, cfg)
    overall = report["overall"]
    return {
        "source": source,
        "transform": transform,
        "style": style,
        "num_samples": len(frame),
        "dropped": dropped,
        "f1": overall["f1"],
        "f1_ci95": overall.get("f1_ci95"),
        "macro_f1": overall["macro_f1"],
        "per_class_f1": {label: c["f1"] for label, c in report["per_class"].items()},
        "abstained": overall.get("abstained", 0),
        "ece": report["calibration"]["ece"] if "calibration" in report else None,
    }
