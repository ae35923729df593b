"""The warehouse built from the real Made With ML files (the data mirror; skipped where it is absent).

labeled_projects (projects.csv joined with tags.csv by position) must be dataset.csv row for row: the
build tests it, and this checks it again from the files, independently of the SQL.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from tagops.settings import Settings
from tagops.warehouse.build import build_snapshot
from tagops.warehouse.snapshots import Snapshot, load_snapshot, load_snapshot_table

pytestmark = [pytest.mark.data, pytest.mark.usefixtures("tagops_home")]

FINE_TAGS = {"reinforcement-learning": 45, "graph-learning": 33, "time-series": 28}
DATASET_TAGS = {"natural-language-processing": 310, "computer-vision": 285, "other": 106, "mlops": 63}
#: The build's budget on the real data (the CI machine has 2 cores).
MAX_BUILD_SECONDS = 10.0


@pytest.fixture
def built(mirror_dir: Path) -> tuple[Snapshot, float]:
    started = time.perf_counter()
    snapshot = build_snapshot(Settings(data_mirror=mirror_dir), feedback=False)
    return snapshot, time.perf_counter() - started


def read_text_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_labeled_projects_is_dataset_csv_row_for_row(built: tuple[Snapshot, float], mirror_dir: Path) -> None:
    snapshot, _ = built
    labeled = load_snapshot_table(Settings(), snapshot.snapshot_id, "labeled_projects")
    labeled = labeled.sort_values("source_row").reset_index(drop=True)
    dataset = read_text_csv(mirror_dir / "dataset.csv")
    assert len(labeled) == len(dataset) == 764
    assert labeled["source_row"].tolist() == list(range(1, 765))
    assert labeled["id"].tolist() == dataset["id"].astype(int).tolist()
    assert labeled["title"].tolist() == dataset["title"].tolist()
    # The files differ only in how they were written: "\r\n" in projects.csv, trailing spaces in dataset.csv.
    described = dataset["description"].str.replace("\r\n", "\n").str.rstrip()
    assert labeled["description"].tolist() == described.tolist()
    assert labeled["tag"].tolist() == dataset["tag"].tolist()
    assert labeled["created_on"].tolist() == pd.to_datetime(dataset["created_on"]).tolist()


def test_finer_tags_are_kept_and_collapse_into_other(built: tuple[Snapshot, float]) -> None:
    snapshot, _ = built
    labeled = load_snapshot_table(Settings(), snapshot.snapshot_id, "labeled_projects")
    fine = Counter(labeled["fine_tag"])
    assert {tag: fine[tag] for tag in FINE_TAGS} == FINE_TAGS
    assert set(labeled.loc[labeled["fine_tag"].isin(FINE_TAGS), "tag"]) == {"other"}
    assert dict(Counter(labeled["tag"])) == DATASET_TAGS
    assert {tag: snapshot.lineage.fine_tags[tag] for tag in FINE_TAGS} == FINE_TAGS


def test_the_snapshot_holds_the_training_set_and_holdout(
    built: tuple[Snapshot, float], mirror_dir: Path
) -> None:
    snapshot, _ = built
    training, holdout, lineage = load_snapshot(Settings(), snapshot.snapshot_id)
    assert len(training) == 764 and len(holdout) == 191
    assert sorted(training["id"]) == sorted(read_text_csv(mirror_dir / "dataset.csv")["id"].astype(int))
    assert holdout["id"].tolist() == sorted(read_text_csv(mirror_dir / "holdout.csv")["id"].astype(int))
    assert not set(training["id"]) & set(holdout["id"])
    assert lineage.sources["dataset.csv"].sha256 == (
        "479e0f3813cc0583717b86512d112b0a397f717ac33652504afdf763c1f3aff1"
    )
    assert lineage.sources["tags.csv"].rows == lineage.sources["projects.csv"].rows == 764


def test_the_build_is_fast_and_a_rebuild_gives_the_same_snapshot(
    built: tuple[Snapshot, float], mirror_dir: Path
) -> None:
    snapshot, seconds = built
    assert seconds <= MAX_BUILD_SECONDS, f"the build took {seconds:.1f} s"
    again = build_snapshot(Settings(data_mirror=mirror_dir), feedback=False)
    assert again.snapshot_id == snapshot.snapshot_id and not again.created
    assert again.seconds <= MAX_BUILD_SECONDS
