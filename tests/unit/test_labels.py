"""The label guide and the challenge set that ship in the package: they load, and bad files are refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tagops import LABELS
from tagops.data.labels import (
    CHALLENGE_COLUMNS,
    CHALLENGE_PATH,
    LABEL_GUIDE_PATH,
    OTHER_TOPICS_COLUMNS,
    STYLES,
    LabelGuide,
    label_descriptions,
    load_challenge,
    load_label_guide,
    load_other_topics,
)
from tagops.errors import DataError

pytestmark = pytest.mark.unit


def raw_guide() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(LABEL_GUIDE_PATH.read_text(encoding="utf-8"))
    return result


def write_guide(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "guide.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


# --- the label guide -----------------------------------------------------------------------------------


def test_the_shipped_guide_loads_with_exactly_the_labels_in_order() -> None:
    guide = load_label_guide()
    assert isinstance(guide, LabelGuide)
    assert tuple(guide.tags) == LABELS
    for tag, rule in guide.tags.items():
        assert rule.summary.strip(), tag
        assert rule.includes, tag
        assert all(exclusion.goes_to in LABELS and exclusion.goes_to != tag for exclusion in rule.excludes)
    assert guide.tie_rule.strip()


def test_the_guide_states_the_boundaries_of_the_design() -> None:
    guide = load_label_guide()
    routes = {(tag, exclusion.goes_to) for tag, rule in guide.tags.items() for exclusion in rule.excludes}
    assert {
        ("computer-vision", "mlops"),
        ("computer-vision", "other"),
        ("natural-language-processing", "other"),
        ("natural-language-processing", "mlops"),
    } <= routes
    # A model that merely mentions production goes to its topic, whichever that is.
    assert {goes_to for tag, goes_to in routes if tag == "mlops"} == set(LABELS) - {"mlops"}


def test_the_guide_is_frozen() -> None:
    guide = load_label_guide()
    with pytest.raises(ValueError, match="frozen"):
        guide.tie_rule = "anything goes"  # type: ignore[misc]


def test_a_guide_in_another_key_order_comes_back_in_labels_order(tmp_path: Path) -> None:
    raw = raw_guide()
    raw["tags"] = dict(reversed(list(raw["tags"].items())))
    assert tuple(load_label_guide(write_guide(tmp_path, raw)).tags) == LABELS


def test_label_descriptions_hold_summary_and_includes_per_tag() -> None:
    guide = load_label_guide()
    descriptions = label_descriptions(guide)
    assert tuple(descriptions) == LABELS
    for tag, text in descriptions.items():
        rule = guide.tags[tag]
        assert text.startswith(rule.summary)
        assert all(phrase in text for phrase in rule.includes)
    assert len(set(descriptions.values())) == len(LABELS)
    assert label_descriptions() == descriptions


def test_descriptions_follow_the_guide_they_are_given(tmp_path: Path) -> None:
    raw = raw_guide()
    raw["tags"]["other"]["includes"] = ["quantum annealing"]
    descriptions = label_descriptions(load_label_guide(write_guide(tmp_path, raw)))
    assert "quantum annealing" in descriptions["other"]
    assert "reinforcement learning" not in descriptions["other"]


def test_a_missing_tag_is_refused_naming_file_and_field(tmp_path: Path) -> None:
    raw = raw_guide()
    del raw["tags"]["mlops"]
    path = write_guide(tmp_path, raw)
    with pytest.raises(DataError, match=r"field 'tags'.*missing \['mlops'\]") as caught:
        load_label_guide(path)
    assert str(path) in str(caught.value)


def test_an_unknown_tag_is_refused(tmp_path: Path) -> None:
    raw = raw_guide()
    raw["tags"]["vision"] = raw["tags"]["computer-vision"]
    with pytest.raises(DataError, match=r"field 'tags'.*unknown \['vision'\]"):
        load_label_guide(write_guide(tmp_path, raw))


def test_an_exclusion_to_an_unknown_tag_is_refused_naming_the_field(tmp_path: Path) -> None:
    raw = raw_guide()
    raw["tags"]["computer-vision"]["excludes"][0]["goes_to"] = "ops"
    path = write_guide(tmp_path, raw)
    with pytest.raises(DataError) as caught:
        load_label_guide(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: field 'tags.computer-vision.excludes[0].goes_to'")
    assert "'ops'" in message


def test_an_exclusion_to_its_own_tag_is_refused(tmp_path: Path) -> None:
    raw = raw_guide()
    raw["tags"]["computer-vision"]["excludes"][0]["goes_to"] = "computer-vision"
    with pytest.raises(DataError, match=r"computer-vision\.excludes\[0\] goes to its own tag"):
        load_label_guide(write_guide(tmp_path, raw))


def test_every_problem_is_listed_with_its_field(tmp_path: Path) -> None:
    raw = raw_guide()
    raw["tags"]["other"]["summary"] = "   "
    raw["tags"]["mlops"]["includes"] = []
    raw["tags"]["natural-language-processing"]["colour"] = "blue"
    del raw["tie_rule"]
    with pytest.raises(DataError) as caught:
        load_label_guide(write_guide(tmp_path, raw))
    fields = {re.search(r"field '([^']+)'", str(v)).group(1) for v in caught.value.violations}  # type: ignore[union-attr]
    assert fields == {
        "tags.other.summary",
        "tags.mlops.includes",
        "tags.natural-language-processing.colour",
        "tie_rule",
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [("{not json", r"not valid JSON \(line 1"), ('["a list"]', "field '\\(top level\\)'")],
)
def test_a_file_that_is_not_a_guide_is_refused(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "guide.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=expected):
        load_label_guide(path)


def test_a_missing_guide_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(DataError, match=re.escape(f"{path}: file not found")):
        load_label_guide(path)


# --- the challenge set ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def challenge() -> pd.DataFrame:
    return load_challenge()


def test_the_challenge_set_loads_with_its_columns_and_types(challenge: pd.DataFrame) -> None:
    assert tuple(challenge.columns) == CHALLENGE_COLUMNS
    assert challenge["id"].dtype == "int64"
    for column in ("title", "description", "tag", "style"):
        assert challenge[column].map(lambda value: isinstance(value, str)).all(), column


def test_the_challenge_set_has_at_least_240_rows_and_60_per_tag(challenge: pd.DataFrame) -> None:
    assert len(challenge) >= 240
    counts = challenge["tag"].value_counts()
    assert set(counts.index) == set(LABELS)
    assert (counts >= 60).all(), counts.to_dict()


def test_challenge_ids_and_titles_are_unique_and_titles_non_empty(challenge: pd.DataFrame) -> None:
    assert challenge["id"].is_unique
    titles = challenge["title"].str.strip()
    assert (titles != "").all()
    assert titles.str.casefold().is_unique


def test_challenge_styles_are_valid_and_each_is_used(challenge: pd.DataFrame) -> None:
    assert set(challenge["style"]) == set(STYLES)
    empty = challenge["description"].str.strip() == ""
    assert (empty == (challenge["style"] == "name_only")).all()
    words = challenge.loc[~empty, "description"].str.split().str.len()
    short = challenge.loc[~empty & (challenge["style"] != "long")]
    assert (words[short.index].between(5, 25)).all()


def test_the_readme_counts_match_the_file(challenge: pd.DataFrame) -> None:
    readme = (CHALLENGE_PATH.parent / "README.md").read_text(encoding="utf-8")
    table = {
        match.group(1): [int(cell) for cell in re.findall(r"\d+", match.group(2))]
        for match in re.finditer(r"^\| `?(\w+)`? \|((?: \d+ \|)+)$", readme, flags=re.MULTILINE)
    }
    counts = pd.crosstab(challenge["style"], challenge["tag"])
    for style in STYLES:
        assert table[style] == [
            *(int(counts.loc[style, tag]) for tag in LABELS),
            int(counts.loc[style].sum()),
        ]
    assert table["total"] == [*(int(counts[tag].sum()) for tag in LABELS), len(challenge)]
    assert f"holds {len(challenge)} project summaries" in readme


def write_challenge(tmp_path: Path, rows: list[list[str]], header: str = ",".join(CHALLENGE_COLUMNS)) -> Path:
    path = tmp_path / "challenge.csv"
    lines = [header, *(",".join(row) for row in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_valid_small_file_loads_with_empty_descriptions_as_empty_strings(tmp_path: Path) -> None:
    path = write_challenge(
        tmp_path,
        [
            ["1", "pixgrid", "Image tiling for detection", "computer-vision", "package_summary"],
            ["2", "bandit-zoo", "", "other", "name_only"],
        ],
    )
    frame = load_challenge(path)
    assert frame["description"].tolist() == ["Image tiling for detection", ""]
    assert frame["id"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (["2", "x", "A short text about many things", "vision", "long"], r"row 2, column 'tag'.*'vision'"),
        (
            ["2", "  ", "A short text about many things", "other", "long"],
            r"row 2, column 'title': title is empty",
        ),
        (
            ["1", "x", "A short text about many things", "other", "long"],
            r"row 2, column 'id': duplicate id 1",
        ),
        (
            ["2", "ONE", "A short text about many things", "other", "long"],
            r"row 2, column 'title': duplicate",
        ),
        (["b", "x", "A short text about many things", "other", "long"], r"row 2, column 'id'.*'b'"),
        (["2", "x", "A short text about many things", "other", "tweet"], r"row 2, column 'style'.*'tweet'"),
        (["2", "x", "Has words", "other", "name_only"], r"row 2, column 'description'.*empty description"),
        (["2", "x", "", "other", "long"], r"row 2, column 'description'.*non-empty description"),
    ],
)
def test_a_bad_challenge_row_is_named_by_file_row_and_column(
    tmp_path: Path, row: list[str], expected: str
) -> None:
    path = write_challenge(
        tmp_path, [["1", "one", "Text for a first row here", "other", "package_summary"], row]
    )
    with pytest.raises(DataError, match=expected) as caught:
        load_challenge(path)
    assert str(caught.value).startswith(f"{path}, row 2")


def test_a_challenge_file_with_wrong_columns_is_refused(tmp_path: Path) -> None:
    path = write_challenge(tmp_path, [["1", "one", "Some text", "other"]], header="id,title,description,tag")
    with pytest.raises(DataError, match=r"missing \['style'\]"):
        load_challenge(path)


# ---------------------------------------------------------------------------------- written `other` rows
def test_the_written_other_rows_load_all_other_with_a_topic_and_a_description() -> None:
    written = load_other_topics()
    assert tuple(written.columns) == OTHER_TOPICS_COLUMNS
    assert len(written) >= 60 and written["id"].is_unique and written["id"].dtype == "int64"
    assert set(written["tag"]) == {"other"}
    assert (written["description"].str.split().str.len() >= 5).all()
    # none is on a topic dataset.csv already holds: benchmarks/unseen_topics.py withholds those
    assert not set(written["topic"]) & {"reinforcement-learning", "graph-learning", "time-series"}
    assert written["topic"].nunique() >= 10


def test_the_written_other_rows_share_no_title_with_the_challenge_set() -> None:
    challenge = {" ".join(t.casefold().split()) for t in load_challenge()["title"]}
    assert not {" ".join(t.casefold().split()) for t in load_other_topics()["title"]} & challenge


def write_other_topics(
    tmp_path: Path, rows: list[list[str]], header: str = ",".join(OTHER_TOPICS_COLUMNS)
) -> Path:
    path = tmp_path / "other_topics.csv"
    path.write_text("\n".join([header, *(",".join(row) for row in rows)]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            ["2", "x", "A post about recommenders", "mlops", "recommender"],
            r"row 2, column 'tag': tag must be 'other'",
        ),
        (["2", "x", "A post about recommenders", "vision", "recommender"], r"row 2, column 'tag'.*'vision'"),
        (["2", "x", " ", "other", "recommender"], r"row 2, column 'description': description is empty"),
        (["2", "x", "A post about recommenders", "other", ""], r"row 2, column 'topic': topic is empty"),
        (
            ["2", "One", "A post about recommenders", "other", "recommender"],
            r"row 2, column 'title': duplicate",
        ),
        (
            ["1", "x", "A post about recommenders", "other", "recommender"],
            r"row 2, column 'id': duplicate id 1",
        ),
    ],
)
def test_a_bad_written_other_row_is_named_by_file_row_and_column(
    tmp_path: Path, row: list[str], expected: str
) -> None:
    path = write_other_topics(tmp_path, [["1", "one", "A post about tabular data", "other", "tabular"], row])
    with pytest.raises(DataError, match=expected) as caught:
        load_other_topics(path)
    assert str(caught.value).startswith(f"{path}, row 2")


def test_a_written_other_file_with_wrong_columns_is_refused(tmp_path: Path) -> None:
    path = write_other_topics(
        tmp_path, [["1", "one", "Some text", "other"]], header="id,title,description,tag"
    )
    with pytest.raises(DataError, match=r"missing \['topic'\]"):
        load_other_topics(path)
