"""Robustness transforms (pure, seeded) and the robustness evaluation of a small fitted model."""

from __future__ import annotations

import importlib
import re
import sys
import unicodedata
from collections.abc import Callable
from types import ModuleType

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagops import LABELS
from tagops.config import EvalConfig, LinearParams, RulesParams
from tagops.data.clean import build_text, count_words, english_stopwords
from tagops.data.robustness import (
    CUT_MAX_CHARS,
    CUT_MIN_CHARS,
    README_EMOJI,
    TERSE_WORDS,
    TRANSFORMS,
    cut_inside_word,
    describe_transforms,
    first_sentence,
    identifier_name,
    noisy_case,
    noisy_punctuation,
    package_name,
    sentence_breaks,
    transform_frame,
)
from tagops.errors import TagopsError
from tagops.inference.predictor import Predictor
from tagops.models import create_model
from tagops.workloads.evaluate import evaluate_predictor, evaluate_robustness, robustness_slice_names

from .conftest import make_projects

pytestmark = pytest.mark.unit

CHALLENGE_MODULE = "tagops.data.labels"
RANDOM = ("cut_mid_word", "case_noise", "punctuation_noise", "readme_markup")
EVAL = EvalConfig(bootstrap_samples=50, seed=7)


def labelled() -> pd.DataFrame:
    """Synthetic projects with real-world-shaped descriptions: several sentences, lines, abbreviations."""
    frame = make_projects(3)
    frame.loc[0, "description"] = "First sentence here. Second sentence, e.g. more text. Third!"
    frame.loc[1, "description"] = "A line without a stop\nand a second line. With more."
    frame.loc[2, "description"] = "Version 1.2 of the tool (see v2.0) handles images? Yes."
    frame.loc[3, "description"] = "   "  # no description: description_only leaves nothing
    frame.loc[4, "title"] = "The Art of the Possible"
    frame.loc[5, "title"] = "A Guide: To the Transformers, and LLMs!"
    return frame


def test_every_transform_is_seeded_keeps_labels_and_emits_no_empty_row() -> None:
    frame = labelled()
    assert list(TRANSFORMS) == [n for n in robustness_slice_names() if n not in ("holdout", "challenge")]
    for name in TRANSFORMS:
        result = transform_frame(frame, name, seed=3)
        pd.testing.assert_frame_equal(result, transform_frame(frame, name, seed=3))
        assert result.index.isin(frame.index).all() and len(result) >= len(frame) - 1
        source = frame.loc[result.index]
        for column in ("id", "created_on", "tag"):
            assert result[column].tolist() == source[column].tolist(), (name, column)
        blank = result["title"].str.strip().eq("") & result["description"].str.strip().eq("")
        assert not blank.any(), name
    assert frame.equals(labelled())  # the source frame is never modified


@pytest.mark.parametrize("name", RANDOM)
def test_random_transforms_change_with_the_seed(name: str) -> None:
    frame = labelled()
    assert not transform_frame(frame, name, 1).equals(transform_frame(frame, name, 2))


def test_title_only_and_description_only() -> None:
    frame = labelled()
    titles = transform_frame(frame, "title_only", 0)
    assert titles["description"].eq("").all()
    assert titles["title"].tolist() == frame["title"].tolist()
    descriptions = transform_frame(frame, "description_only", 0)
    assert descriptions["title"].eq("").all()
    assert len(descriptions) == len(frame) - 1 and 3 not in descriptions.index  # dropped, not emptied
    assert descriptions["description"].tolist() == frame["description"].drop(index=3).tolist()


def test_package_title_is_a_short_lowercase_name_without_spaces() -> None:
    frame = labelled()
    result = transform_frame(frame, "package_title", 0)
    assert result["description"].tolist() == frame["description"].tolist()
    for name, title in zip(result["title"], frame["title"], strict=True):
        assert name and not any(c.isspace() for c in name) and name == name.casefold()
        parts = re.split(r"[-_]", name)
        assert len(parts) <= 3 and all(part.isalnum() for part in parts)
        assert len(parts) == 1 or set(parts) <= set(re.findall(r"[^\W_]+", title.casefold()))
    assert package_name("Graph Wavelet Neural Network") in {
        "graph-wavelet-neural",
        "graph_wavelet_neural",
        "graphwaveletneural",
    }
    assert package_name("A Guide: To the Transformers, and LLMs!") in {
        "guide-transformers-llms",
        "guide_transformers_llms",
        "guidetransformersllms",
    }
    assert package_name("The Of And").replace("-", " ").replace("_", " ").split()[0] in ("the", "theofand")
    # the same title is named the same in any frame, under any seed
    twice = pd.DataFrame({"title": ["Image Segmentation Toolkit"] * 2, "description": ["a", "b"]})
    names = set(transform_frame(twice, "package_title", 1)["title"]) | set(
        transform_frame(twice.iloc[::-1], "package_title", 9)["title"]
    )
    assert len(names) == 1


def test_identifier_title_is_the_package_name_capitalised_and_joined() -> None:
    frame = labelled()
    result = transform_frame(frame, "identifier_title", 0)
    assert result["description"].tolist() == frame["description"].tolist()
    for name, title in zip(result["title"], frame["title"], strict=True):
        assert name and name.isalnum() and name[0] == name[0].upper()
        assert name.casefold() == re.sub(r"[-_]", "", package_name(title))  # the same words
    assert identifier_name("Graph wavelet neural network") == "GraphWaveletNeural"
    assert identifier_name("A Guide: To the Transformers, and LLMs!") == "GuideTransformersLLMs"
    assert identifier_name("YOLOv4 object detection") == "YOLOv4ObjectDetection"  # the rest as written
    assert identifier_name("!!!") == ""


def test_one_line_keeps_at_most_one_sentence() -> None:
    frame = labelled()
    result = transform_frame(frame, "one_line", 0)
    assert result["title"].tolist() == frame["title"].tolist()
    for cut, original in zip(result["description"], frame["description"], strict=True):
        assert "\n" not in cut and not sentence_breaks(cut)
        assert original.strip().startswith(cut)
    assert result["description"].tolist()[:4] == [
        "First sentence here.",
        "A line without a stop",
        "Version 1.2 of the tool (see v2.0) handles images?",
        "",
    ]
    assert first_sentence("Uses e.g. PyTorch and more. Then this.") == "Uses e.g. PyTorch and more."
    assert first_sentence('Says "Hello." Then more.') == 'Says "Hello."'


def test_cut_mid_word_ends_inside_a_word_within_the_limit() -> None:
    frame = labelled()
    for seed in range(5):
        result = transform_frame(frame, "cut_mid_word", seed)
        for cut, original in zip(result["description"], frame["description"], strict=True):
            assert len(cut) <= CUT_MAX_CHARS and original.startswith(cut)
            if original.strip():
                assert cut[-1].isalnum() and original[len(cut)].isalnum(), (cut, original)
                assert len(cut) >= CUT_MIN_CHARS


@given(st.text(max_size=120), st.integers(0, 2**32 - 1))
def test_cut_inside_word_property(text: str, seed: int) -> None:
    import numpy as np

    cut = cut_inside_word(text, np.random.default_rng(seed))
    assert len(cut) <= CUT_MAX_CHARS and text.startswith(cut)
    splittable = any(text[i - 1].isalnum() and text[i].isalnum() for i in range(1, min(len(text), 61)))
    if splittable:
        assert cut[-1].isalnum() and text[len(cut)].isalnum()


def test_terse_is_a_package_name_and_at_most_twelve_words() -> None:
    frame = labelled()
    result = transform_frame(frame, "terse", 0)
    packaged = transform_frame(frame, "package_title", 0)
    assert result["title"].tolist() == packaged["title"].tolist()
    for title, description in zip(result["title"], result["description"], strict=True):
        assert " " not in title
        assert count_words(build_text(title, description)) <= TERSE_WORDS
        assert not sentence_breaks(description)
    long = pd.DataFrame({"title": ["Tool"], "description": [" ".join(f"w{i}" for i in range(30)) + "."]})
    assert count_words(transform_frame(long, "terse", 0)["description"].iloc[0]) == TERSE_WORDS - 1


def test_case_noise_changes_case_only() -> None:
    frame = labelled()
    result = transform_frame(frame, "case_noise", 0)
    for column in ("title", "description"):
        assert result[column].str.lower().tolist() == frame[column].str.lower().tolist()
    assert (result["title"] != frame["title"]).any() and (result["description"] != frame["description"]).any()


def strip_punctuation_and_spaces(text: str) -> str:
    return "".join(c for c in text if not c.isspace() and not unicodedata.category(c).startswith("P"))


def test_punctuation_noise_changes_punctuation_and_spacing_only() -> None:
    frame = labelled()
    result = transform_frame(frame, "punctuation_noise", 0)
    for column in ("title", "description"):
        for noisy, original in zip(result[column], frame[column], strict=True):
            assert strip_punctuation_and_spaces(noisy) == strip_punctuation_and_spaces(original)
    assert (result["description"] != frame["description"]).any()
    assert result["description"].str.contains("  ").any()


@given(st.text(max_size=80), st.integers(0, 2**32 - 1))
def test_noise_keeps_the_words(text: str, seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    assert strip_punctuation_and_spaces(noisy_punctuation(text, rng)) == strip_punctuation_and_spaces(text)
    cased = noisy_case(text, rng)
    if text.isascii():
        assert cased.lower() == text.lower()


def test_readme_markup_wraps_the_same_text_in_badges_a_logo_and_emphasis() -> None:
    frame = labelled()
    result = transform_frame(frame, "readme_markup", 0)
    assert result["title"].tolist() == [f"# {title}" for title in frame["title"]]
    for marked, original in zip(result["description"], frame["description"], strict=True):
        assert marked.startswith("[![") and marked.count("[![") >= 2
        assert f"**{original.strip()}**" in marked if original.strip() else marked.endswith(README_EMOJI)
    assert result["description"].str.contains('<p align="center">', regex=False).any()


def test_transform_frame_names_what_is_wrong() -> None:
    frame = labelled()
    with pytest.raises(TagopsError, match="unknown robustness transform 'shout'; known: title_only"):
        transform_frame(frame, "shout", 0)
    with pytest.raises(TagopsError, match="no column 'description'"):
        transform_frame(frame.drop(columns=["description"]), "one_line", 0)


def test_every_transform_is_described() -> None:
    about = describe_transforms()
    assert list(about) == list(TRANSFORMS) and all(about.values())
    assert not {w.casefold() for w in about["terse"].split()} <= english_stopwords()


# ----------------------------------------------------------------------------------------- evaluation
@pytest.fixture(scope="module", params=["rules", "linear"])
def predictor(request: pytest.FixtureRequest) -> Predictor:
    params = RulesParams(min_term_count=2) if request.param == "rules" else LinearParams(max_features=2000)
    frame = make_projects(10)
    texts = [build_text(t, d) for t, d in zip(frame.title, frame.description, strict=True)]
    return Predictor(create_model(params).fit(texts, frame.tag.tolist()))


def challenge_frame() -> pd.DataFrame:
    rows = [
        ("segmentation-kit", "Fast pixel segmentation for camera video", "computer-vision", "package"),
        ("docker_serving", "Model serving in production with docker", "mlops", "package"),
        ("tokenizers", "Sentence tokenizer for translation", "natural-language-processing", "package"),
        ("Graph agents", "Reinforcement learning agent on a graph; reward shaping", "other", "Read Me!"),
        ("Photo detection", "Detect objects in a photo", "computer-vision", "Read Me!"),
    ]
    return pd.DataFrame(
        [(str(i), *row) for i, row in enumerate(rows)], columns=["id", "title", "description", "tag", "style"]
    )


def test_evaluate_robustness_scores_every_slice(predictor: Predictor) -> None:
    holdout = make_projects(3, start_id=900, offset=40)
    holdout.loc[0, "description"] = ""
    report = evaluate_robustness(predictor, holdout, EVAL, challenge=challenge_frame())
    slices = report["slices"]
    assert list(slices) == ["holdout", *TRANSFORMS, "challenge", "challenge.package", "challenge.read_me"]
    assert report["seed"] == EVAL.seed
    direct = evaluate_predictor(predictor, holdout, EVAL)
    assert slices["holdout"]["f1"] == direct["overall"]["f1"]
    assert slices["holdout"]["per_class_f1"] == {k: v["f1"] for k, v in direct["per_class"].items()}
    assert slices["holdout"]["ece"] == direct["calibration"]["ece"]
    titles = transform_frame(holdout, "title_only", EVAL.seed)
    assert slices["title_only"]["f1"] == evaluate_predictor(predictor, titles, EVAL)["overall"]["f1"]
    assert (slices["description_only"]["num_samples"], slices["description_only"]["dropped"]) == (11, 1)
    assert slices["title_only"]["source"] == "holdout" and slices["title_only"]["transform"] == "title_only"
    assert (slices["challenge"]["num_samples"], slices["challenge.package"]["num_samples"]) == (5, 3)
    assert slices["challenge.read_me"]["style"] == "Read Me!"
    for scores in slices.values():
        assert set(scores["per_class_f1"]) == set(LABELS)
        assert 0.0 <= scores["f1"] <= 1.0 and 0.0 <= scores["macro_f1"] <= 1.0  # type: ignore[operator]
        assert scores["abstained"] == 0  # no threshold
    worst = min(slices, key=lambda name: slices[name]["f1"])  # type: ignore[arg-type,return-value]
    assert slices[report["worst_slice"]]["f1"] == slices[worst]["f1"]  # type: ignore[index]


def test_a_threshold_abstains_in_every_slice(predictor: Predictor) -> None:
    holdout = make_projects(2, start_id=900, offset=40)
    report = evaluate_robustness(
        predictor, holdout, EvalConfig(bootstrap_samples=0, threshold=1.0), slices=["holdout", "terse"]
    )
    assert list(report["slices"]) == ["holdout", "terse"]
    assert all(s["abstained"] == s["num_samples"] == 8 for s in report["slices"].values())


def test_an_empty_slice_has_no_scores_and_is_never_the_worst(predictor: Predictor) -> None:
    holdout = make_projects(1, start_id=900, offset=40)
    holdout["description"] = ""
    report = evaluate_robustness(predictor, holdout, EVAL, slices=["holdout", "description_only"])
    empty = report["slices"]["description_only"]
    assert (empty["num_samples"], empty["dropped"], empty["f1"], empty["per_class_f1"]) == (0, 4, None, {})
    assert report["worst_slice"] == "holdout"


def patch_load_challenge(monkeypatch: pytest.MonkeyPatch, load: Callable[[], pd.DataFrame]) -> None:
    """Point ``tagops.data.labels.load_challenge`` at ``load`` (a stand-in module where there is none)."""
    try:
        module = importlib.import_module(CHALLENGE_MODULE)
    except ModuleNotFoundError:
        module = ModuleType(CHALLENGE_MODULE)
        monkeypatch.setitem(sys.modules, CHALLENGE_MODULE, module)
    monkeypatch.setattr(module, "load_challenge", load, raising=False)


def test_the_challenge_set_is_loaded_only_when_not_given(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def load_challenge() -> pd.DataFrame:
        calls.append(1)
        return challenge_frame()

    patch_load_challenge(monkeypatch, load_challenge)
    holdout = make_projects(2, start_id=900, offset=40)
    report = evaluate_robustness(predictor, holdout, EVAL, slices=["challenge"])
    assert calls == [1] and report["slices"]["challenge"]["num_samples"] == 5
    evaluate_robustness(predictor, holdout, EVAL, slices=["holdout", "one_line"])
    evaluate_robustness(predictor, holdout, EVAL, challenge=challenge_frame(), slices=["challenge"])
    assert calls == [1]


def test_bad_slices_and_challenge_frames_are_named(predictor: Predictor) -> None:
    holdout = make_projects(1, start_id=900, offset=40)
    with pytest.raises(TagopsError, match="unknown robustness slice 'upside_down'"):
        evaluate_robustness(predictor, holdout, EVAL, slices=["upside_down"])
    bad = challenge_frame()
    bad.loc[2, "tag"] = "robotics"
    with pytest.raises(TagopsError, match=r"challenge set, row 3, column 'tag': 'robotics'"):
        evaluate_robustness(predictor, holdout, EVAL, challenge=bad, slices=["challenge"])
    with pytest.raises(TagopsError, match="challenge set: no column 'tag'"):
        evaluate_robustness(
            predictor, holdout, EVAL, challenge=challenge_frame().drop(columns="tag"), slices=["challenge"]
        )
