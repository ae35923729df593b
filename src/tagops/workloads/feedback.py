"""Feedback from the prediction log as training rows: validated, de-duplicated, split by time.

A prediction labelled twice with different tags, and a text labelled differently on different
predictions, are conflicts and dropped; repeated texts are kept once; a text whose title is already in
dataset.csv or holdout.csv is dropped (no duplicates, no leakage into the holdout); the rest must pass
the data contract (:func:`tagops.data.validate.validate_frame`), row by row. The newest
``recent_fraction`` of the rows is the recent labelled window, held out of training.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.errors import DataError, TagopsError

if TYPE_CHECKING:
    import pandas as pd

    from tagops.data.stages import DataSnapshot

logger = logging.getLogger(__name__)

FEEDBACK_FILE = "feedback"


# -------------------------------------------------------------------------------- feedback → rows
@dataclass
class FeedbackRows:
    """Validated feedback as projects rows: what joins training and the held-out recent window."""

    train: pd.DataFrame
    recent: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def _text_key(title: str, description: str) -> str:
    return f"{title.strip()} {description.strip()}".lower()


def feedback_to_rows(
    labelled: list[dict[str, Any]],
    dataset: pd.DataFrame,
    holdout: pd.DataFrame,
    *,
    recent_fraction: float,
) -> FeedbackRows:
    """Turn feedback joined with its predictions into contract-valid rows, split by time.

    ``labelled`` rows are :meth:`~tagops.predlog.reader.LogReader.read_labelled` rows. Counts of every
    row dropped, and why, are returned with the rows.
    """
    import pandas as pd

    from tagops.data.validate import validate_frame

    counts = {"feedback": len(labelled)}
    by_prediction: dict[str, list[dict[str, Any]]] = {}
    for row in labelled:
        by_prediction.setdefault(str(row["prediction_id"]), []).append(row)
    candidates = []
    conflicting_predictions = repeated = 0
    for rows in by_prediction.values():
        if len({str(r["feedback_tag"]) for r in rows}) > 1:
            conflicting_predictions += 1
            continue
        repeated += len(rows) - 1
        candidates.append(max(rows, key=lambda r: r["feedback_at"]))  # the latest of identical labels
    counts["conflicting_predictions"] = conflicting_predictions
    counts["repeated_feedback"] = repeated
    by_text: dict[str, list[dict[str, Any]]] = {}
    for row in candidates:
        by_text.setdefault(_text_key(str(row["title"]), str(row["description"])), []).append(row)
    unique, conflicting_texts, duplicates = [], 0, 0
    for rows in by_text.values():
        if len({str(r["feedback_tag"]) for r in rows}) > 1:
            conflicting_texts += len(rows)
            continue
        duplicates += len(rows) - 1
        unique.append(max(rows, key=lambda r: r["feedback_at"]))
    counts["conflicting_texts"] = conflicting_texts
    counts["duplicate_texts"] = duplicates
    known_titles = {str(t).strip().lower() for t in [*dataset["title"], *holdout["title"]]}
    known_texts = {
        _text_key(str(t), str(d))
        for frame in (dataset, holdout)
        for t, d in zip(frame["title"], frame["description"], strict=True)
    }
    fresh = [
        r
        for r in unique
        if str(r["title"]).strip().lower() not in known_titles
        and _text_key(str(r["title"]), str(r["description"])) not in known_texts
    ]
    counts["known_titles"] = len(unique) - len(fresh)
    fresh.sort(key=lambda r: (r["feedback_at"], str(r["prediction_id"])))
    next_id = int(max([*dataset["id"].tolist(), *holdout["id"].tolist(), 0])) + 1
    frame = pd.DataFrame(
        {
            "id": [str(next_id + i) for i in range(len(fresh))],
            "created_on": [r["feedback_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") for r in fresh],
            "title": [str(r["title"]) for r in fresh],
            "description": [str(r["description"]) for r in fresh],
            "tag": [str(r["feedback_tag"]) for r in fresh],
        },
        dtype=object,
    )
    frame = frame.astype(str) if len(frame) else frame
    before = len(frame)
    valid = _valid_rows(frame, validate_frame)
    counts["invalid"] = before - len(valid)
    recent_rows = math.ceil(len(valid) * recent_fraction) if len(valid) >= 2 else 0
    train = valid.iloc[: len(valid) - recent_rows].reset_index(drop=True)
    recent = valid.iloc[len(valid) - recent_rows :].reset_index(drop=True)
    counts["train"], counts["recent"] = len(train), len(recent)
    return FeedbackRows(train, recent, counts)


def _valid_rows(frame: pd.DataFrame, validate_frame: Any) -> pd.DataFrame:
    """The rows of ``frame`` that pass the contract (typed), dropping each row a violation names."""
    import pandas as pd

    from tagops.data.ingest import EXPECTED_COLUMNS

    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in EXPECTED_COLUMNS})
    for _ in range(3):  # dropping a row cannot create a new violation; the loop is a safety net
        if frame.empty:
            return empty
        try:
            return validate_frame(frame, file=FEEDBACK_FILE)  # type: ignore[no-any-return]
        except DataError as error:
            bad = {v.row - 1 for v in error.violations if v.row is not None}
            if not bad:  # a file-level problem: nothing row-wise to drop
                raise
            for violation in error.violations[:5]:
                logger.info("feedback row dropped: %s", violation)
            frame = frame.drop(index=[i for i in bad if i in frame.index]).reset_index(drop=True)
    raise TagopsError("feedback rows keep failing the data contract; see the log")


def write_training_data(
    dataset: pd.DataFrame, rows: pd.DataFrame, holdout_path: Path, output_dir: Path
) -> DataSnapshot:
    """dataset.csv + feedback rows as one projects file (the holdout is left as it is), hashed."""
    import pandas as pd

    from tagops.data.stages import snapshot

    output_dir.mkdir(parents=True, exist_ok=True)
    combined = pd.concat([dataset, rows], ignore_index=True)
    combined["created_on"] = pd.to_datetime(combined["created_on"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    path = output_dir / "dataset.csv"
    combined.to_csv(path, index=False)
    return snapshot(path, holdout_path)
