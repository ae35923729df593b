"""benchmarks/unseen_topics.py: finer tags joined to dataset.csv, a topic withheld, scored as served."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from tagops.config import (
    CalibrationConfig,
    DataConfig,
    EnsembleParams,
    LinearParams,
    PipelineConfig,
    RulesParams,
)
from tagops.settings import Settings

from .conftest import make_projects

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "benchmarks") not in sys.path:  # the script imports its neighbours as a script does
    sys.path.insert(0, str(ROOT / "benchmarks"))
unseen_topics = importlib.import_module("unseen_topics")


def finer(frame: pd.DataFrame) -> list[str]:
    """Finer tags for ``frame``: its `other` rows alternate between two topics, the rest keep their tag."""
    tags, k = [], 0
    for tag in frame["tag"]:
        if tag == "other":
            tags.append(("graph-learning", "time-series", "time-series")[k % 3])
            k += 1
        else:
            tags.append(tag)
    return tags


def files_of(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """projects.csv and tags.csv for ``frame``, in another row order than dataset.csv (aligned by id)."""
    shuffled = frame.assign(fine=finer(frame)).sample(frac=1.0, random_state=3).reset_index(drop=True)
    return shuffled.drop(columns=["tag", "fine"]), pd.DataFrame({"tag": shuffled["fine"]})


def test_finer_tags_join_dataset_rows_by_id_through_projects_by_position() -> None:
    frame = make_projects(per_label=6)
    projects, tags = files_of(frame)
    joined = unseen_topics.with_fine_tags(frame, projects, tags)
    assert list(joined["id"]) == list(frame["id"])
    assert list(joined["fine_tag"]) == finer(frame)
    assert unseen_topics.other_topics(joined) == ["time-series", "graph-learning"]


def test_files_that_do_not_line_up_are_refused_with_what_is_wrong() -> None:
    frame = make_projects(per_label=6)
    projects, tags = files_of(frame)
    with pytest.raises(ValueError, match=r"projects.csv has 24 rows but tags.csv has 23"):
        unseen_topics.with_fine_tags(frame, projects, tags.iloc[1:])
    with pytest.raises(ValueError, match=r"dataset.csv ids missing from projects.csv: \['999'\]"):
        unseen_topics.with_fine_tags(pd.concat([frame, frame.iloc[:1].assign(id="999")]), projects, tags)
    nlp = frame.index[frame["tag"] == "natural-language-processing"][0]
    position = projects.index[projects["id"] == frame.loc[nlp, "id"]][0]
    wrong = tags.copy()
    wrong.loc[position, "tag"] = "time-series"  # a finer topic collapses into `other` only
    with pytest.raises(ValueError, match=rf"id {frame.loc[nlp, 'id']} is 'natural-language-processing' in"):
        unseen_topics.with_fine_tags(frame, projects, wrong)
    other = projects.index[projects["id"].isin(frame.loc[frame["tag"] == "other", "id"])][0]
    wrong = tags.copy()
    wrong.loc[other, "tag"] = "computer-vision"  # an `other` project tagged with another of the four
    with pytest.raises(ValueError, match="1 finer tag"):
        unseen_topics.with_fine_tags(frame, projects, wrong)


def test_a_withheld_topic_is_all_unseen_and_the_seen_fifth_is_stratified_and_apart() -> None:
    frame = make_projects(per_label=10)
    frame = frame.assign(fine_tag=finer(frame))
    parts = unseen_topics.withhold(frame, "time-series", seed=5)
    assert set(parts["unseen"]["fine_tag"]) == {"time-series"}
    assert len(parts["unseen"]) == (frame["fine_tag"] == "time-series").sum()
    assert "time-series" not in set(parts["rest"]["fine_tag"]) | set(parts["seen"]["fine_tag"])
    assert set(parts["rest"]["id"]).isdisjoint(parts["seen"]["id"])
    assert len(parts["rest"]) + len(parts["seen"]) + len(parts["unseen"]) == len(frame)
    assert parts["seen"]["tag"].value_counts().to_dict() == {
        "computer-vision": 2,
        "mlops": 2,
        "natural-language-processing": 2,
        "other": 1,
    }


def test_each_family_is_trained_without_the_topic_and_scored_as_served(tmp_path: Path) -> None:
    frame = make_projects(per_label=16)
    frame = frame.assign(fine_tag=finer(frame))
    linear = LinearParams(C=1.0, min_df=1, label_guide=False)
    cfg = PipelineConfig(
        data=DataConfig(val_size=0.25),
        models=(linear,),
        calibration=CalibrationConfig(enabled=True),
    )
    rules = RulesParams(min_term_count=2)
    families = [EnsembleParams(members=(rules, linear)), rules, linear]
    scores = unseen_topics.run_topic(
        frame, "time-series", families, cfg, seed=7, workdir=tmp_path, settings=Settings(home=tmp_path / "h")
    )
    assert list(scores) == ["rules", "linear", "ensemble"]  # members first: the ensemble is built of them
    withheld = int((frame["fine_tag"] == "time-series").sum())
    for s in scores.values():
        assert s["unseen_rows"] == withheld == sum(s["unseen_answers"].values())
        assert s["unseen_other_share"] == s["unseen_answers"].get("other", 0) / withheld
        assert s["seen_rows"] == math.ceil(0.2 * (len(frame) - withheld)) and 0.0 <= s["seen_f1"] <= 1.0
    # the synthetic topics share `other`'s words, so the model still calls most of them `other`
    assert scores["linear"]["unseen_other_share"] > 0.5
    summary = unseen_topics.summarize("linear", {"time-series": scores, "graph-learning": scores})
    assert summary["unseen_other_share"] == pytest.approx(scores["linear"]["unseen_other_share"])
    assert set(summary["topics"]) == {"time-series", "graph-learning"}
    assert not (tmp_path / "time-series").exists()  # a topic's models are deleted once it is scored
