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
from tagops.outputs import check_output_file, staged_path


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


#: File types read and written by :func:`read_items` and :func:`write_predictions` (JSON lines: one
#: object per line).
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")

#: How JSON names the type of a value that should have been a string.
_JSON_TYPES = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", list: "an array"}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON lines file, each with its line number as ``_row``; every bad line is named."""
    from tagops.data.ingest import read_utf8

    name = str(path)
    text = read_utf8(path, "JSON lines file")
    items: list[dict[str, Any]] = []
    problems = []
    for row, line in enumerate(text.splitlines(), start=1):
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
    return items


def _field_problem(item: dict[str, Any], field_name: str, *, required: bool) -> str | None:
    """Why ``item[field_name]`` is not a usable text field, or ``None`` when it is."""
    if field_name not in item:
        if not required:
            return None
        found = ", ".join(repr(k) for k in item if k != "_row") or "none"
        return f"missing field '{field_name}' (fields found: {found})"
    value = item[field_name]
    if isinstance(value, str) or (value is None and not required):
        return None
    kind = _JSON_TYPES.get(type(value), "an object")
    return f"field '{field_name}' must be a string, not {kind}"


def read_items(path: Path) -> list[dict[str, Any]]:
    """Read prediction inputs from ``.csv`` or ``.jsonl``; every bad row is named, none is dropped."""
    suffix = path.suffix.lower()
    name = str(path)
    from tagops.data.ingest import read_csv, require_file

    require_file(path, "CSV or JSON lines file")
    items: list[dict[str, Any]] = []
    if suffix in CSV_SUFFIXES:
        frame = read_csv(path)
        if "title" not in frame.columns:
            raise DataError([Violation(name, "missing column 'title'", column="title")])
        items = frame.to_dict(orient="records")
    elif suffix in JSONL_SUFFIXES:
        items = _read_jsonl(path)
    else:
        raise DataError([Violation(name, f"unsupported input type {suffix!r}: use .csv or .jsonl")])
    problems = []
    for index, item in enumerate(items, start=1):
        row = item.pop("_row", index)
        title_problem = _field_problem(item, "title", required=True)
        description_problem = _field_problem(item, "description", required=False)
        if title_problem:
            problems.append(Violation(name, title_problem, row=row, column="title"))
        elif description_problem:
            problems.append(Violation(name, description_problem, row=row, column="description"))
        elif not (item["title"].strip() or (item.get("description") or "").strip()):
            problems.append(Violation(name, "empty title and description", row=row, column="title"))
    if problems:
        raise DataError(problems)
    if not items:
        raise DataError([Violation(name, "no rows to predict")])
    return items


def check_output(path: Path) -> None:
    """Refuse an output path that cannot take the predictions, before any row is predicted.

    The type must be one :func:`write_predictions` writes; the rest is
    :func:`tagops.outputs.check_output_file` (not a folder; a file can be made there).

    Raises:
        DataError: naming the path and what is wrong with it.

    """
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSONL_SUFFIXES:
        raise DataError([Violation(name, f"unsupported output type {suffix!r}: use .csv or .jsonl")])
    check_output_file(path)


def predict_file(predictor: Predictor, input_path: Path, output_path: Path, *, batch_size: int = 512) -> int:
    """Predict every row of ``input_path`` into ``output_path`` (CSV or JSONL by extension); returns rows."""
    check_output(output_path)
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
    # The path was checked (check_output) before any row was read. Written beside the target and
    # renamed into place: a failed write leaves no half file, and an earlier file of the same name
    # stays whole until the new one is complete.
    staged = staged_path(output_path)
    try:
        if output_path.suffix.lower() in CSV_SUFFIXES:
            import pandas as pd

            flat = [
                {
                    **{k: v for k, v in r.items() if k != "probabilities"},
                    **{f"p_{label}": p for label, p in r["probabilities"].items()},
                }
                for r in rows
            ]
            pd.DataFrame(flat).to_csv(staged, index=False)
        else:
            with staged.open("w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps(row, default=str) + "\n")
        staged.replace(output_path)
    except OSError as error:
        staged.unlink(missing_ok=True)
        raise DataError([Violation(str(output_path), f"cannot write ({error.strerror or error})")]) from error
    return len(rows)
