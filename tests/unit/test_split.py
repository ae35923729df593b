"""Seeded stratified split."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tagops.data.split import stratify_split

from .conftest import make_projects

pytestmark = pytest.mark.unit


@pytest.fixture
def unbalanced() -> pd.DataFrame:
    """Uneven classes: 20 / 13 / 9 / 5 rows."""
    sizes = {"computer-vision": 20, "mlops": 13, "natural-language-processing": 9, "other": 5}
    frame = make_projects(20)
    parts = [frame[frame.tag == label].head(n) for label, n in sizes.items()]
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("val_size", [0.2, 0.25, 0.5])
def test_sizes_and_proportions(unbalanced: pd.DataFrame, val_size: float) -> None:
    train, val = stratify_split(unbalanced, val_size=val_size, seed=7)
    n = len(unbalanced)
    assert len(val) == math.ceil(n * val_size)  # scikit-learn rounds the test share up
    assert len(train) + len(val) == n
    counts = unbalanced.tag.value_counts()
    for label, total in counts.items():
        expected_val = total * len(val) / n
        assert abs((val.tag == label).sum() - expected_val) <= 1, label
        assert (train.tag == label).sum() + (val.tag == label).sum() == total


def test_no_row_lost_or_duplicated(unbalanced: pd.DataFrame) -> None:
    train, val = stratify_split(unbalanced, val_size=0.3, seed=1)
    together = pd.concat([train, val])
    assert together["id"].is_unique
    assert sorted(together["id"]) == sorted(unbalanced["id"])
    # Rows travel whole: every (id, title, tag) triple is one of the input's.
    key = ["id", "title", "description", "tag"]
    assert (
        together[key]
        .sort_values("id")
        .reset_index(drop=True)
        .equals(unbalanced[key].sort_values("id").reset_index(drop=True))
    )


def test_indexes_are_reset(unbalanced: pd.DataFrame) -> None:
    train, val = stratify_split(unbalanced, val_size=0.2, seed=1)
    assert list(train.index) == list(range(len(train)))
    assert list(val.index) == list(range(len(val)))


def test_same_seed_same_split(unbalanced: pd.DataFrame) -> None:
    a_train, a_val = stratify_split(unbalanced, val_size=0.2, seed=42)
    b_train, b_val = stratify_split(unbalanced.copy(), val_size=0.2, seed=42)
    pd.testing.assert_frame_equal(a_train, b_train)
    pd.testing.assert_frame_equal(a_val, b_val)


def test_different_seed_different_split(unbalanced: pd.DataFrame) -> None:
    _, a_val = stratify_split(unbalanced, val_size=0.2, seed=1)
    _, b_val = stratify_split(unbalanced, val_size=0.2, seed=2)
    assert set(a_val["id"]) != set(b_val["id"])


def test_custom_label_column(unbalanced: pd.DataFrame) -> None:
    frame = unbalanced.rename(columns={"tag": "label"})
    train, val = stratify_split(frame, val_size=0.2, seed=3, label_column="label")
    assert set(val["label"]) == set(frame["label"])
    assert len(train) + len(val) == len(frame)


def test_label_with_one_row_is_refused(unbalanced: pd.DataFrame) -> None:
    lonely = pd.DataFrame([["999", "2021-01-01", "t", "d", "lonely"]], columns=unbalanced.columns)
    frame = pd.concat([unbalanced, lonely], ignore_index=True)
    with pytest.raises(ValueError, match="lonely"):
        stratify_split(frame, val_size=0.2, seed=1)
