"""The data contract, declared once with pandera and applied to every file we train or evaluate on.

``tagops data validate PATH [--against OTHER]`` reports every violation with file, row and column, and
exits non-zero. ``--against`` also checks leakage: ids or texts shared by two files.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops import LABELS
from tagops.data.ingest import EXPECTED_COLUMNS, read_csv
from tagops.errors import DataError, Violation

if TYPE_CHECKING:
    import pandas as pd

UNLABELLED_COLUMNS: tuple[str, ...] = EXPECTED_COLUMNS[:-1]


@cache
def project_schema(*, labelled: bool = True) -> Any:
    """The pandera schema of a projects file (with or without the ``tag`` column)."""
    import pandera.pandas as pa

    def non_blank(series: pd.Series) -> pd.Series:
        return series.str.strip().str.len() > 0

    columns = {
        "id": pa.Column(
            str,
            checks=[
                pa.Check.str_matches(
                    r"^\d{1,18}$", error="id must be a non-negative integer (at most 18 digits)"
                ),
            ],
            unique=True,
            report_duplicates="exclude_first",
        ),
        "created_on": pa.Column(
            str,
            checks=pa.Check(_parses_as_datetime, element_wise=False, error="created_on is not a date-time"),
        ),
        "title": pa.Column(str, checks=pa.Check(non_blank, error="title is empty")),
        "description": pa.Column(str),
    }
    if labelled:
        columns["tag"] = pa.Column(
            str, checks=pa.Check.isin(LABELS, error=f"tag is not one of the labels {list(LABELS)}")
        )
    return pa.DataFrameSchema(
        columns,
        unique=["title", "description"],
        report_duplicates="exclude_first",
        strict=False,
        name="projects" if labelled else "unlabelled projects",
    )


def _parses_as_datetime(series: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(series, errors="coerce", format="mixed", utc=True).notna()


_DUPLICATE_MESSAGES = {
    "id": "duplicate id (the same id appears in an earlier row)",
    "title": "duplicate (title, description) pair (it appears in an earlier row)",
    "description": "duplicate (title, description) pair (it appears in an earlier row)",
}


def _to_violations(file: str, failure_cases: pd.DataFrame) -> list[Violation]:
    """Turn pandera's failure table into one violation per (row, column) problem."""
    import pandas as pd

    violations: list[Violation] = []
    seen: set[tuple[int | None, str | None, str]] = set()
    for case in failure_cases.to_dict(orient="records"):
        index = case["index"]
        row = int(index) + 1 if index is not None and not pd.isna(index) else None
        column = case["column"] if isinstance(case["column"], str) else None
        check = str(case["check"])
        if "unique" in check or "field_uniqueness" in check or "multiple_fields_uniqueness" in check:
            message = _DUPLICATE_MESSAGES.get(column or "title", "duplicate value")
            if column in ("title", "description"):
                column = "title, description"
        elif check == "column_in_dataframe":
            message = f"missing column {case['failure_case']!r}"
            column = str(case["failure_case"])
        else:
            value = str(case["failure_case"])
            shown = value if len(value) <= 60 else value[:57] + "..."
            message = f"{check} (value {shown!r})"
        key = (row, column, message)
        if key not in seen:
            seen.add(key)
            violations.append(Violation(file, message, row=row, column=column))
    violations.sort(key=lambda v: (v.row or 0, v.column or ""))
    return violations


def validate_frame(frame: pd.DataFrame, *, file: str, labelled: bool = True) -> pd.DataFrame:
    """Check ``frame`` against the contract and return it typed (int id, datetime created_on).

    Raises:
        DataError: listing every violation (file, row, column, message).

    """
    import pandas as pd
    import pandera.errors

    expected = EXPECTED_COLUMNS if labelled else UNLABELLED_COLUMNS
    missing = [column for column in expected if column not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns))
        raise DataError(
            [Violation(file, f"missing column '{c}' (columns found: {found})", column=c) for c in missing]
        )
    if frame.empty:
        raise DataError([Violation(file, "no data rows")])
    frame = frame.reset_index(drop=True)
    # Compare ids as numbers, not strings: " 5", "05" and "5" are the same id.
    frame["id"] = frame["id"].str.strip().str.replace(r"^0+(?=\d)", "", regex=True)
    try:
        project_schema(labelled=labelled).validate(frame, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        raise DataError(_to_violations(file, errors.failure_cases)) from None
    typed = frame.loc[:, list(expected)].copy()
    typed["id"] = typed["id"].astype("int64")
    # Offsets may differ between rows: normalise to UTC, then drop the zone (all times comparable).
    typed["created_on"] = pd.to_datetime(typed["created_on"], format="mixed", utc=True).dt.tz_convert(None)
    return typed


def load_projects(path: Path, *, labelled: bool = True) -> pd.DataFrame:
    """Read and validate a projects file; the one way training and evaluation read data."""
    return validate_frame(read_csv(path), file=str(path), labelled=labelled)


def _text_key(frame: pd.DataFrame) -> pd.Series:
    return (frame["title"].str.strip() + " " + frame["description"].str.strip()).str.lower()


def find_leakage(frame: pd.DataFrame, other: pd.DataFrame, *, file: str, other_file: str) -> list[Violation]:
    """Rows of ``frame`` whose id or (title, description) text also appears in ``other``."""
    violations: list[Violation] = []
    other_ids = {int(i): n for n, i in enumerate(other["id"].tolist(), start=1)}
    other_texts = {t: n for n, t in enumerate(_text_key(other).tolist(), start=1)}
    for row, (project_id, text) in enumerate(
        zip(frame["id"].tolist(), _text_key(frame).tolist(), strict=True), 1
    ):
        if int(project_id) in other_ids:
            violations.append(
                Violation(
                    file,
                    f"id {project_id} also in {other_file} row {other_ids[int(project_id)]} (leakage)",
                    row=row,
                    column="id",
                )
            )
        if text in other_texts:
            violations.append(
                Violation(
                    file,
                    f"same title and description as {other_file} row {other_texts[text]} (leakage)",
                    row=row,
                    column="title, description",
                )
            )
    return violations


def check_no_leakage(frame: pd.DataFrame, other: pd.DataFrame, *, file: str, other_file: str) -> None:
    """Raise a :class:`DataError` if ``frame`` and ``other`` share ids or texts."""
    violations = find_leakage(frame, other, file=file, other_file=other_file)
    if violations:
        raise DataError(violations)
