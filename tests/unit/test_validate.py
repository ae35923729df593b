"""The data contract: every violation names file, row (1-based data row) and column."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tagops.data.validate import check_no_leakage, find_leakage, load_projects, validate_frame
from tagops.errors import DataError, Violation

from .conftest import make_projects, write_csv

pytestmark = pytest.mark.unit


def violations_of(path: Path, **kwargs: bool) -> list[Violation]:
    with pytest.raises(DataError) as info:
        load_projects(path, **kwargs)
    assert info.value.violations, "a DataError must carry at least one violation"
    for violation in info.value.violations:
        assert violation.file == str(path)
        assert "\n" not in str(violation)
    return info.value.violations


def with_edit(frame: pd.DataFrame, row: int, column: str, value: str) -> pd.DataFrame:
    """A copy with data row ``row`` (1-based) of ``column`` set to ``value``."""
    out = frame.copy()
    out.loc[row - 1, column] = value
    return out


@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (3, "tag", "deep-learning", "tag is not one of the labels"),
        (5, "title", "   ", "title is empty"),
        (7, "title", "", "title is empty"),
        (9, "created_on", "not a date", "created_on is not a date-time"),
        (11, "created_on", "2021-13-45", "created_on is not a date-time"),
        (2, "id", "12a", "id must be a non-negative integer"),
        (4, "id", "-3", "id must be a non-negative integer"),
        (6, "id", "1.5", "id must be a non-negative integer"),
        (8, "id", "", "id must be a non-negative integer"),
    ],
)
def test_bad_value_is_named_by_file_row_column(
    tmp_path: Path, projects: pd.DataFrame, row: int, column: str, value: str, message: str
) -> None:
    path = write_csv(tmp_path / "bad.csv", with_edit(projects, row, column, value))
    (violation,) = violations_of(path)
    assert (violation.row, violation.column) == (row, column)
    assert message in violation.message
    assert str(violation).startswith(f"{path}, row {row}, column '{column}': ")


def test_duplicate_id_names_the_later_row(tmp_path: Path, projects: pd.DataFrame) -> None:
    path = write_csv(tmp_path / "dup.csv", with_edit(projects, 10, "id", projects.loc[2, "id"]))
    (violation,) = violations_of(path)
    assert (violation.row, violation.column) == (10, "id")
    assert "duplicate id" in violation.message


def test_duplicate_title_and_description_names_the_later_row(tmp_path: Path, projects: pd.DataFrame) -> None:
    frame = projects.copy()
    frame.loc[20, ["title", "description"]] = frame.loc[4, ["title", "description"]].to_numpy()
    path = write_csv(tmp_path / "dup.csv", frame)
    (violation,) = violations_of(path)
    assert violation.row == 21
    assert violation.column == "title, description"
    assert "duplicate (title, description)" in violation.message


def test_same_title_with_other_description_is_not_a_duplicate(tmp_path: Path, projects: pd.DataFrame) -> None:
    path = write_csv(tmp_path / "ok.csv", with_edit(projects, 20, "title", projects.loc[4, "title"]))
    assert len(load_projects(path)) == len(projects)


def test_every_problem_is_reported_not_only_the_first(tmp_path: Path, projects: pd.DataFrame) -> None:
    frame = with_edit(projects, 2, "tag", "nope")
    frame = with_edit(frame, 5, "title", " ")
    frame = with_edit(frame, 8, "created_on", "yesterday")
    frame = with_edit(frame, 9, "id", "x9")
    frame = with_edit(frame, 12, "id", frame.loc[0, "id"])
    path = write_csv(tmp_path / "many.csv", frame)
    found = {(v.row, v.column) for v in violations_of(path)}
    assert found == {(2, "tag"), (5, "title"), (8, "created_on"), (9, "id"), (12, "id")}
    with pytest.raises(DataError, match=r"and 4 more problems"):
        load_projects(path)


def test_row_is_the_data_row_even_with_multiline_fields(tmp_path: Path, projects: pd.DataFrame) -> None:
    frame = with_edit(projects, 1, "description", "line one\nline two\nline three")
    frame = with_edit(frame, 2, "tag", "unknown")
    path = write_csv(tmp_path / "multiline.csv", frame)
    (violation,) = violations_of(path)
    assert (violation.row, violation.column) == (2, "tag")


@pytest.mark.parametrize("column", ["id", "created_on", "title", "description", "tag"])
def test_missing_column(tmp_path: Path, projects: pd.DataFrame, column: str) -> None:
    path = write_csv(tmp_path / "missing.csv", projects.drop(columns=[column]))
    (violation,) = violations_of(path)
    assert violation.column == column
    assert violation.row is None
    assert f"missing column '{column}'" in violation.message


def test_all_missing_columns_are_reported(tmp_path: Path, projects: pd.DataFrame) -> None:
    path = write_csv(tmp_path / "missing.csv", projects.drop(columns=["id", "tag"]))
    assert {v.column for v in violations_of(path)} == {"id", "tag"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a UTF-8"),
        (b"id,title\x00\x00\x01,abc\n", "NUL"),
        (b"", "empty file"),
        (b"  \n\n \n", "empty file"),
        (json.dumps([{"id": 1, "title": "x"}], indent=2).encode(), "not a CSV file"),
    ],
    ids=["binary", "nul-bytes", "empty", "blank", "json"],
)
def test_file_that_is_not_a_csv(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "input.csv"
    path.write_bytes(content)
    (violation,) = violations_of(path)
    assert violation.row is None
    assert message in violation.message


def test_one_line_json_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text(json.dumps({"id": 1, "title": "x", "description": "y", "tag": "mlops"}))
    assert violations_of(path)


def test_header_only_file_has_no_data_rows(tmp_path: Path, projects: pd.DataFrame) -> None:
    path = write_csv(tmp_path / "header.csv", projects.head(0))
    (violation,) = violations_of(path)
    assert "no data rows" in violation.message


def test_file_not_found(tmp_path: Path) -> None:
    (violation,) = violations_of(tmp_path / "absent.csv")
    assert "not found" in violation.message


def test_ragged_csv_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(
        "id,created_on,title,description,tag\n1,2021-01-01,a,b,mlops\n2,2021-01-01,c,d,mlops,extra\n"
    )
    with pytest.raises(DataError, match="not valid CSV"):
        load_projects(path)


def test_ragged_csv_violation_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text(
        "id,created_on,title,description,tag\n1,2021-01-01,a,b,mlops\n2,2021-01-01,c,d,mlops,extra\n"
    )
    with pytest.raises(DataError) as info:
        load_projects(path)
    assert all("\n" not in str(v) for v in info.value.violations)


def test_valid_file_comes_back_typed(tmp_path: Path, projects: pd.DataFrame) -> None:
    frame = with_edit(projects, 1, "id", " 7000 ")
    frame = with_edit(frame, 2, "created_on", "2020-02-20T06:43:18")
    frame = with_edit(frame, 3, "description", "")
    path = write_csv(tmp_path / "ok.csv", frame)
    typed = load_projects(path)
    assert list(typed.columns) == ["id", "created_on", "title", "description", "tag"]
    assert typed["id"].dtype == "int64"
    assert pd.api.types.is_datetime64_any_dtype(typed["created_on"])
    assert typed.loc[0, "id"] == 7000
    assert typed.loc[1, "created_on"] == pd.Timestamp("2020-02-20 06:43:18")
    assert typed.loc[2, "description"] == ""
    assert typed["title"].tolist() == projects["title"].tolist()


def test_utf8_bom_and_extra_columns_are_accepted(tmp_path: Path, projects: pd.DataFrame) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + projects.assign(notes="x").to_csv(index=False).encode())
    typed = load_projects(path)
    assert list(typed.columns) == ["id", "created_on", "title", "description", "tag"]


def test_unlabelled_file_needs_no_tag(tmp_path: Path, projects: pd.DataFrame) -> None:
    path = write_csv(tmp_path / "unlabelled.csv", projects.drop(columns=["tag"]))
    typed = load_projects(path, labelled=False)
    assert "tag" not in typed.columns
    assert len(typed) == len(projects)


def test_validate_frame_is_independent_of_the_incoming_index(projects: pd.DataFrame) -> None:
    shuffled = with_edit(projects, 4, "tag", "bad").sample(frac=1.0, random_state=0)
    position = list(shuffled.index).index(3) + 1
    with pytest.raises(DataError) as info:
        validate_frame(shuffled, file="mem")
    assert [(v.row, v.column) for v in info.value.violations] == [(position, "tag")]


def test_ids_equal_as_integers_are_duplicates(projects: pd.DataFrame) -> None:
    frame = with_edit(projects, 10, "id", "0" + projects.loc[2, "id"])
    with pytest.raises(DataError) as info:
        validate_frame(frame, file="mem")
    assert [(v.row, v.column) for v in info.value.violations] == [(10, "id")]


def test_id_beyond_int64_is_a_data_error(projects: pd.DataFrame) -> None:
    frame = with_edit(projects, 3, "id", "9" * 20)
    with pytest.raises(DataError) as info:
        validate_frame(frame, file="mem")
    assert [(v.row, v.column) for v in info.value.violations] == [(3, "id")]


def test_timestamps_with_different_offsets_are_valid(projects: pd.DataFrame) -> None:
    frame = projects.copy()
    frame["created_on"] = ["2021-01-01T10:00:00+01:00"] + ["2021-06-01T10:00:00+02:00"] * (len(frame) - 1)
    assert len(validate_frame(frame, file="mem")) == len(frame)


def test_violation_str_is_one_line_with_location() -> None:
    assert str(Violation("f.csv", "bad", row=3, column="tag")) == "f.csv, row 3, column 'tag': bad"
    assert str(Violation("f.csv", "bad", column="tag")) == "f.csv, column 'tag': bad"
    assert str(Violation("f.csv", "bad")) == "f.csv: bad"


def test_data_error_message_counts_the_rest() -> None:
    one = Violation("f.csv", "a", row=1)
    assert str(DataError([one])) == "f.csv, row 1: a"
    assert str(DataError([one, one])) == "f.csv, row 1: a (and 1 more problem)"
    assert str(DataError([one] * 3)) == "f.csv, row 1: a (and 2 more problems)"
    assert str(DataError([])) == "invalid data"


# ------------------------------------------------------------------------------------------- leakage
@pytest.fixture
def train_and_holdout() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = validate_frame(make_projects(6, start_id=1), file="train.csv")
    holdout = validate_frame(make_projects(3, start_id=1000, offset=50), file="holdout.csv")
    return train, holdout


def test_disjoint_files_have_no_leakage(train_and_holdout: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, holdout = train_and_holdout
    assert find_leakage(holdout, train, file="holdout.csv", other_file="train.csv") == []
    check_no_leakage(holdout, train, file="holdout.csv", other_file="train.csv")


def test_shared_id_is_leakage(train_and_holdout: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, holdout = train_and_holdout
    holdout.loc[4, "id"] = train.loc[7, "id"]
    (violation,) = find_leakage(holdout, train, file="holdout.csv", other_file="train.csv")
    assert (violation.file, violation.row, violation.column) == ("holdout.csv", 5, "id")
    assert "train.csv row 8" in violation.message
    assert "leakage" in violation.message


def test_shared_text_is_leakage_ignoring_case_and_outer_spaces(
    train_and_holdout: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    train, holdout = train_and_holdout
    holdout.loc[2, "title"] = "  " + train.loc[0, "title"].upper()
    holdout.loc[2, "description"] = train.loc[0, "description"] + " "
    (violation,) = find_leakage(holdout, train, file="holdout.csv", other_file="train.csv")
    assert (violation.row, violation.column) == (3, "title, description")
    assert "train.csv row 1" in violation.message


def test_check_no_leakage_reports_every_leak(train_and_holdout: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, holdout = train_and_holdout
    holdout.loc[0, "id"] = train.loc[0, "id"]
    holdout.loc[5, ["title", "description"]] = train.loc[3, ["title", "description"]].to_numpy()
    with pytest.raises(DataError) as info:
        check_no_leakage(holdout, train, file="holdout.csv", other_file="train.csv")
    assert [(v.row, v.column) for v in info.value.violations] == [(1, "id"), (6, "title, description")]
