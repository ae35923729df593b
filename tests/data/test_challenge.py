"""The challenge set and the written `other` rows share no title with the real Made With ML files
(skipped where the mirror is absent).

A shared title would mean the challenge set measures memory of the training data, not how the model reads
new text, and that a written row repeats a project the data already holds, under a tag it may not have.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tagops.data.labels import load_challenge, load_other_topics
from tagops.data.validate import load_projects

pytestmark = pytest.mark.data


def normalise(title: str) -> str:
    return " ".join(title.casefold().split())


@pytest.mark.parametrize("name", ["dataset.csv", "holdout.csv"])
def test_no_challenge_title_appears_in_the_real_data(mirror_dir: Path, name: str) -> None:
    real = {normalise(title) for title in load_projects(mirror_dir / name)["title"]}
    assert len(real) > 100  # the file was read, not an empty frame
    shared = sorted(title for title in load_challenge()["title"] if normalise(title) in real)
    assert shared == [], f"challenge titles also in {name}: {shared}"


@pytest.mark.parametrize("name", ["dataset.csv", "holdout.csv"])
def test_no_written_other_title_appears_in_the_real_data(mirror_dir: Path, name: str) -> None:
    real = {normalise(title) for title in load_projects(mirror_dir / name)["title"]}
    assert len(real) > 100
    shared = sorted(title for title in load_other_topics()["title"] if normalise(title) in real)
    assert shared == [], f"written `other` titles also in {name}: {shared}"
