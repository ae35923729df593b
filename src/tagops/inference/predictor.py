"""Prediction for one item, many items, or a file; the same path serves the API later.

``tagops predict --title T --description D`` prints JSON; ``tagops predict --input F --output G`` reads
CSV or JSON lines (columns/fields ``title`` and ``description``, optional ``id``) and writes the same format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagops.data.clean import build_text
from tagops.errors import DataError, Violation
from tagops.metrics import apply_threshold
from tagops.models.base import TagModel, load_model
from tagops.models.calibration import Calibration, read_calibration


@dataclass
class Predictor:
    """A loaded model, how it answers (calibration, abstention threshold) and where it came from.

    ``threshold`` is the confidence below which an answer abstains to ``other`` (``None``: never);
    ``calibration`` rescales the model's probabilities (``None``: they are used as they are).
    """

    model: TagModel
    threshold: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None
    #: Where ``threshold`` came from: ``model`` (its calibration), ``override`` (the caller) or ``none``.
    threshold_source: str = "none"

    @classmethod
    def from_directory(
        cls, directory: Path, *, threshold: float | None = None, metadata: dict[str, Any] | None = None
    ) -> Predictor:
        """Load a saved model folder with its calibration.

        ``threshold=None`` keeps the model's own abstention threshold (chosen on validation and saved
        with it); a number overrides it, and ``0`` never abstains.
        """
        calibration = read_calibration(directory)
        if threshold is not None:
            resolved, source = (threshold or None), "override"
        elif calibration is not None and calibration.threshold is not None:
            resolved, source = calibration.threshold, "model"
        else:
            resolved, source = None, "none"
        return cls(
            load_model(directory),
            threshold=resolved,
            metadata={"path": str(directory), **(metadata or {})},
            calibration=calibration,
            threshold_source=source,
        )

    @staticmethod
    def texts(titles: Sequence[str], descriptions: Sequence[str]) -> list[str]:
        """The model input for each (title, description) pair."""
        return [build_text(t, d) for t, d in zip(titles, descriptions, strict=True)]

    def describe(self) -> dict[str, Any]:
        """Family, labels, how it answers (threshold, temperature) and provenance, for reports and the API."""
        return {
            "family": self.model.family,
            "labels": list(self.model.labels),
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "temperature": None if self.calibration is None else self.calibration.temperature,
            **self._members(),
            **self.metadata,
        }

    def _members(self) -> dict[str, list[str]]:
        """An ensemble's member families (``{"members": [...]}``); nothing for a single model."""
        members = getattr(self.model, "members_", None)
        return {"members": [member.family for member in members]} if members else {}

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        """The probabilities the model answers with: its own, rescaled by its calibration when it has one."""
        raw = self.model.predict_proba(texts)
        return raw if self.calibration is None else self.calibration.apply(raw)

    def predict(self, titles: Sequence[str], descriptions: Sequence[str]) -> list[dict[str, Any]]:
        """Tag, per-tag probabilities, confidence and whether the answer abstained to ``other``."""
        if not titles:
            return []
        return self._results(self.proba(self.texts(titles, descriptions)))

    def _results(self, proba: np.ndarray) -> list[dict[str, Any]]:
        labels = self.model.labels
        predicted, abstained = apply_threshold(proba, labels, self.threshold)
        return [
            {
                "tag": tag,
                "confidence": float(row.max()),
                "abstained": bool(flag),
                "probabilities": {label: round(float(p), 6) for label, p in zip(labels, row, strict=True)},
            }
            for tag, flag, row in zip(predicted, abstained, proba, strict=True)
        ]


def read_items(path: Path) -> list[dict[str, Any]]:
    """Read prediction inputs from ``.csv`` or ``.jsonl``; every bad row is named, none is dropped."""
    suffix = path.suffix.lower()
    name = str(path)
    if not path.is_file():
        raise DataError([Violation(name, "file not found")])
    items: list[dict[str, Any]] = []
    if suffix == ".csv":
        from tagops.data.ingest import read_csv

        frame = read_csv(path)
        if "title" not in frame.columns:
            raise DataError([Violation(name, "missing column 'title'", column="title")])
        items = frame.to_dict(orient="records")
    elif suffix in (".jsonl", ".ndjson"):
        problems = []
        for row, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                problems.append(Violation(name, f"invalid JSON ({error.msg})", row=row))
                continue
            if not isinstance(item, dict):
                problems.append(Violation(name, "each line must be a JSON object", row=row))
                continue
            items.append({**item, "_row": row})
        if problems:
            raise DataError(problems)
    else:
        raise DataError([Violation(name, f"unsupported input type {suffix!r}: use .csv or .jsonl")])
    problems = []
    for index, item in enumerate(items, start=1):
        row = item.pop("_row", index)
        title, description = item.get("title"), item.get("description", "")
        if not isinstance(title, str):
            problems.append(Violation(name, "field 'title' must be a string", row=row, column="title"))
        elif not isinstance(description, str | None):
            problems.append(
                Violation(name, "field 'description' must be a string", row=row, column="description")
            )
        elif not (title.strip() or (description or "").strip()):
            problems.append(Violation(name, "empty title and description", row=row, column="title"))
    if problems:
        raise DataError(problems)
    if not items:
        raise DataError([Violation(name, "no rows to predict")])
    return items


def predict_file(predictor: Predictor, input_path: Path, output_path: Path, *, batch_size: int = 512) -> int:
    """Predict every row of ``input_path`` into ``output_path`` (CSV or JSONL by extension); returns rows."""
    items = read_items(input_path)
    return write_predictions(items, predict_in_batches(predictor, items, batch_size=batch_size), output_path)


def predict_in_batches(
    predictor: Predictor, items: list[dict[str, Any]], *, batch_size: int
) -> list[dict[str, Any]]:
    """Predictions for ``items`` (dicts with ``title`` and ``description``), ``batch_size`` at a time."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        results.extend(
            predictor.predict([i["title"] for i in batch], [i.get("description") or "" for i in batch])
        )
    return results


def write_predictions(items: list[dict[str, Any]], results: list[dict[str, Any]], output_path: Path) -> int:
    """Write each input item with its prediction to ``output_path`` (CSV or JSONL by extension)."""
    # Input fields that share a name with an output (e.g. a labelled file's `tag`) are kept as `input_<name>`.
    rows = [
        {**{(f"input_{k}" if k in result else k): v for k, v in item.items()}, **result}
        for item, result in zip(items, results, strict=True)
    ]
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if output_path.suffix.lower() == ".csv":
        import pandas as pd

        flat = [
            {
                **{k: v for k, v in r.items() if k != "probabilities"},
                **{f"p_{label}": p for label, p in r["probabilities"].items()},
            }
            for r in rows
        ]
        pd.DataFrame(flat).to_csv(output_path, index=False)
    else:
        with output_path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, default=str) + "\n")
    return len(rows)
