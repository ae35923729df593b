"""Contracts on the real Made With ML files (the data mirror; skipped where it is absent).

The expected numbers are the facts stated in the mirror's README: if one of these fails, the data changed
under us, and every reported metric would silently mean something else.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tagops import LABELS
from tagops.data.ingest import load_manifest, read_csv, sha256_file
from tagops.data.validate import find_leakage, load_projects

pytestmark = pytest.mark.data

DATASET_TAGS = {"natural-language-processing": 310, "computer-vision": 285, "other": 106, "mlops": 63}
HOLDOUT_TAGS = {"natural-language-processing": 78, "computer-vision": 71, "other": 26, "mlops": 16}
FINE_TAGS = {
    "natural-language-processing": 310,
    "computer-vision": 285,
    "mlops": 63,
    "reinforcement-learning": 45,
    "graph-learning": 33,
    "time-series": 28,
}
COLLAPSED_INTO_OTHER = {"reinforcement-learning", "graph-learning", "time-series"}
FILES = ("dataset.csv", "holdout.csv", "projects.csv", "tags.csv")


@pytest.fixture(scope="module")
def dataset(mirror_dir: Path) -> pd.DataFrame:
    return load_projects(mirror_dir / "dataset.csv")


@pytest.fixture(scope="module")
def holdout(mirror_dir: Path) -> pd.DataFrame:
    return load_projects(mirror_dir / "holdout.csv")


@pytest.mark.parametrize("name", FILES)
def test_file_matches_the_manifest_checksum(mirror_dir: Path, name: str) -> None:
    assert sha256_file(mirror_dir / name) == load_manifest()[name].sha256


def test_manifest_lists_exactly_the_four_files_with_their_row_counts() -> None:
    manifest = load_manifest()
    assert set(manifest) == set(FILES)
    assert {name: entry.rows for name, entry in manifest.items()} == {
        "dataset.csv": 764,
        "holdout.csv": 191,
        "projects.csv": 764,
        "tags.csv": 764,
    }


def test_dataset_passes_the_contract_with_the_documented_counts(dataset: pd.DataFrame) -> None:
    assert len(dataset) == 764 == load_manifest()["dataset.csv"].rows
    assert dict(Counter(dataset["tag"])) == DATASET_TAGS
    assert set(dataset["tag"]) == set(LABELS)


def test_holdout_passes_the_contract_with_the_documented_counts(holdout: pd.DataFrame) -> None:
    assert len(holdout) == 191 == load_manifest()["holdout.csv"].rows
    assert dict(Counter(holdout["tag"])) == HOLDOUT_TAGS


def test_typed_columns(dataset: pd.DataFrame, holdout: pd.DataFrame) -> None:
    for frame in (dataset, holdout):
        assert list(frame.columns) == ["id", "created_on", "title", "description", "tag"]
        assert frame["id"].dtype == "int64"
        assert pd.api.types.is_datetime64_any_dtype(frame["created_on"])
        assert frame["id"].is_unique
        assert (frame["title"].str.strip() != "").all()


def test_some_descriptions_span_several_lines(dataset: pd.DataFrame) -> None:
    # The README warns about it; a naive line-based reader would produce more, broken rows.
    assert dataset["description"].str.contains("\n").any()


def test_no_leakage_between_dataset_and_holdout(dataset: pd.DataFrame, holdout: pd.DataFrame) -> None:
    assert find_leakage(dataset, holdout, file="dataset.csv", other_file="holdout.csv") == []
    assert find_leakage(holdout, dataset, file="holdout.csv", other_file="dataset.csv") == []
    assert not set(dataset["id"]) & set(holdout["id"])
    # Titles alone never repeat exactly (case aside, one short title, "ELECTRA", names two projects).
    assert not set(dataset["title"]) & set(holdout["title"])


def test_created_on_within_2020(dataset: pd.DataFrame, holdout: pd.DataFrame) -> None:
    for frame in (dataset, holdout):
        assert frame["created_on"].min() >= pd.Timestamp("2020-02-20")
        assert frame["created_on"].max() < pd.Timestamp("2020-10-07")
        assert (frame["created_on"].dt.year == 2020).all()


def test_projects_file_validates_unlabelled_and_matches_dataset(
    mirror_dir: Path, dataset: pd.DataFrame
) -> None:
    projects = load_projects(mirror_dir / "projects.csv", labelled=False)
    assert len(projects) == 764
    assert list(projects.columns) == ["id", "created_on", "title", "description"]
    # Same rows in the same order; descriptions differ only in white space (trailing spaces, CRLF in
    # multi-line descriptions), which cleaning removes anyway.
    for column in ("id", "created_on", "title"):
        pd.testing.assert_series_equal(projects[column], dataset[column])

    def words(series: pd.Series) -> list[str]:
        return [" ".join(text.split()) for text in series]

    assert words(projects["description"]) == words(dataset["description"])


def test_tags_file_aligns_with_projects_by_position(mirror_dir: Path, dataset: pd.DataFrame) -> None:
    # One column, so not a projects file: tagops' read_csv (which wants a header of several fields) does
    # not apply; read it as plain text the same way (every value a string, nothing guessed as missing).
    tags = pd.read_csv(mirror_dir / "tags.csv", dtype=str, keep_default_na=False)
    assert list(tags.columns) == ["tag"]
    assert len(tags) == len(read_csv(mirror_dir / "projects.csv")) == 764
    assert (tags["tag"] != "").all()
    assert dict(Counter(tags["tag"])) == FINE_TAGS
    collapsed = ["other" if t in COLLAPSED_INTO_OTHER else t for t in tags["tag"]]
    assert collapsed == dataset["tag"].tolist()
