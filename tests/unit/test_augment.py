"""Training-data augmentation: short-form copies of a share of the rows, labels kept, seeded."""

from __future__ import annotations

import pandas as pd
import pytest

from tagops.config import AugmentConfig
from tagops.data.augment import SHORT_FORMS, augment_frame, augment_rows, augment_stage

from .conftest import make_projects

pytestmark = pytest.mark.unit


def test_none_returns_the_rows_as_they_are() -> None:
    frame = make_projects(4)
    assert augment_frame(frame, "none", fraction=0.5, seed=1) is frame
    assert augment_frame(frame, "short", fraction=0.0, seed=1) is frame


def test_short_adds_one_labelled_copy_for_a_share_of_the_rows() -> None:
    frame = make_projects(10)
    grown = augment_frame(frame, "short", fraction=0.5, seed=3)
    originals, copies = grown.iloc[: len(frame)], grown.iloc[len(frame) :]
    pd.testing.assert_frame_equal(originals.reset_index(drop=True), frame)
    assert len(copies) == len(frame) // 2
    source = frame.set_index("id")
    shorter = 0
    for _, row in copies.iterrows():  # each copy keeps its source's id and tag, in no longer a text
        assert row["tag"] == source.loc[row["id"], "tag"]
        length = len(row["title"]) + len(row["description"])
        original = len(source.loc[row["id"], "title"]) + len(source.loc[row["id"], "description"])
        assert 0 < length <= original
        shorter += length < original
    assert shorter > len(copies) // 2


def test_short_forms_are_mixed_and_seeded() -> None:
    frame = make_projects(25)
    first = augment_frame(frame, "short", fraction=1.0, seed=11)
    pd.testing.assert_frame_equal(first, augment_frame(frame, "short", fraction=1.0, seed=11))
    assert not first.equals(augment_frame(frame, "short", fraction=1.0, seed=12))
    copies = first.iloc[len(frame) :]
    assert (copies["description"] == "").any()  # title_only among the forms
    assert (copies["description"] != "").any()
    assert len(SHORT_FORMS) >= 3


def test_unknown_recipe_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown augmentation recipe 'synonyms'"):
        augment_frame(make_projects(2), "synonyms", fraction=0.5, seed=1)


def test_stage_augments_training_split_and_dataset() -> None:
    train, dataset = make_projects(4), make_projects(6)
    rows = augment_stage(train, dataset, AugmentConfig(recipe="short", fraction=0.5), seed=2)
    assert [len(r) for r in rows] == [len(train) + 8, len(dataset) + 12]
    plain = augment_stage(train, dataset, AugmentConfig(), seed=2)
    assert plain[0] is train and plain[1] is dataset


def test_label_guide_statements_state_every_tag_and_route_exclusions() -> None:
    from tagops import LABELS
    from tagops.data.augment import label_guide_statements
    from tagops.data.labels import load_label_guide

    texts, tags = label_guide_statements()
    assert len(texts) == len(tags) and set(tags) == set(LABELS)
    assert all(text.strip() for text in texts)
    guide = load_label_guide()
    exclusion = guide.tags["computer-vision"].excludes[0]
    assert [tag for text, tag in zip(texts, tags, strict=True) if text == exclusion.phrase] == [
        exclusion.goes_to
    ]
    assert guide.tags["other"].includes[0] in texts


def test_a_family_adds_the_written_other_rows_to_its_own_once() -> None:
    from tagops.data.augment import other_topics_texts, with_other_topics_texts

    written = other_topics_texts()
    assert len(written) == len(set(written)) > 0
    assert with_other_topics_texts(["a"], ["mlops"]) == (
        ["a", *written],
        ["mlops", *(["other"] * len(written))],
    )
    # rows ``augmentation.other_topics`` already added come once, as given
    given = ["a", *written[:3]]
    assert with_other_topics_texts(given, ["mlops", "other", "other", "other"]) == (
        [*given, *written[3:]],
        ["mlops", *(["other"] * len(written))],
    )


def test_the_written_other_rows_join_the_rows_only_when_asked_with_ids_of_their_own() -> None:
    from tagops.data.labels import load_other_topics

    written = load_other_topics()
    frame = make_projects(3)
    assert augment_rows(frame, AugmentConfig(), seed=1) is frame
    rows = augment_rows(frame, AugmentConfig(other_topics=True), seed=1)
    assert len(rows) == len(frame) + len(written)
    assert rows.iloc[: len(frame)].equals(frame)  # the data first, as it was
    added = rows.iloc[len(frame) :]
    assert added["title"].tolist() == written["title"].tolist()
    assert set(added["tag"]) == {"other"} and added["created_on"].isna().all()
    assert rows["id"].is_unique and all(isinstance(i, str) for i in rows["id"])  # ids as text, as frame's


def test_the_written_other_rows_keep_the_types_of_the_warehouse_training_set() -> None:
    """As ``tagops.warehouse.snapshots`` types it: int64 ids, dates, an origin; the frame must still
    write to Parquet, as the pipeline's steps hand it on."""
    import io

    frame = make_projects(3).astype({"id": "int64", "created_on": "datetime64[us]"}).assign(origin="projects")
    rows = augment_rows(frame, AugmentConfig(other_topics=True), seed=1)
    assert rows["id"].dtype == "int64" and rows["id"].is_unique
    assert rows["created_on"].dtype == frame["created_on"].dtype
    assert rows["created_on"].iloc[len(frame) :].isna().all()
    assert set(rows["origin"].iloc[len(frame) :]) == {"other_topics"}
    rows.to_parquet(io.BytesIO())


def test_the_written_other_rows_join_training_and_refit_rows_and_get_short_copies_with_them() -> None:
    from tagops.data.labels import load_other_topics

    written = len(load_other_topics())
    train, dataset = make_projects(4), make_projects(6)
    config = AugmentConfig(recipe="short", fraction=1.0, other_topics=True)
    rows = augment_stage(train, dataset, config, seed=2)
    assert [len(r) for r in rows] == [2 * (len(train) + written), 2 * (len(dataset) + written)]
