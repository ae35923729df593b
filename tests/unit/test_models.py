"""Rules and linear models: fit, probabilities, safe save/load, dispatch, explanations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tagops import LABELS
from tagops.config import LinearParams, RulesParams, TransformerParams
from tagops.data.clean import build_text
from tagops.models import MODEL_FILE, TagModel, create_model, load_model, read_model_info
from tagops.models.linear import LinearModel, char_wb_analyzer, word_analyzer
from tagops.models.rules import SEED_KEYWORDS, RulesModel

from .conftest import make_projects

pytestmark = pytest.mark.unit

PARAMS = {
    "rules": RulesParams(min_term_count=2, mined_terms_per_class=20),
    "linear": LinearParams(max_features=2000, C=5.0),
}
UNSEEN = [
    "Camera pixel segmentation",
    "Docker deployment for model serving",
    "Sentence translation and sentiment",
    "Reinforcement learning agent",
    "",
    "completely unrelated words here",
    "https://github.com/foo/bar",
]


def training_data(per_label: int = 10) -> tuple[list[str], list[str]]:
    frame = make_projects(per_label)
    texts = [build_text(t, d) for t, d in zip(frame.title, frame.description, strict=True)]
    return texts, frame.tag.tolist()


@pytest.fixture(scope="module", params=["rules", "linear"])
def fitted(request: pytest.FixtureRequest) -> TagModel:
    texts, labels = training_data()
    return create_model(PARAMS[request.param]).fit(texts, labels)


def test_create_model_picks_the_family() -> None:
    assert isinstance(create_model(RulesParams()), RulesModel)
    assert isinstance(create_model(LinearParams()), LinearModel)
    assert isinstance(create_model(LinearParams()), TagModel)


def test_predict_proba_shape_and_rows_sum_to_one(fitted: TagModel) -> None:
    texts, _ = training_data(3)
    proba = fitted.predict_proba(texts + UNSEEN)
    assert proba.shape == (len(texts) + len(UNSEEN), len(LABELS))
    assert proba.dtype == np.float64
    assert np.all(proba >= 0)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert fitted.labels == LABELS


def test_fitted_model_separates_the_synthetic_classes(fitted: TagModel) -> None:
    texts, labels = training_data()
    predicted = [LABELS[i] for i in fitted.predict_proba(texts).argmax(axis=1)]
    # The classes share no vocabulary: a model that learnt anything gets most training rows right.
    assert np.mean(np.array(predicted) == np.array(labels)) > 0.9


def test_predictions_follow_the_text(fitted: TagModel) -> None:
    top = fitted.predict_proba(UNSEEN[:4]).argmax(axis=1)
    assert [LABELS[i] for i in top] == list(LABELS)


def test_save_load_round_trip_is_exact(fitted: TagModel, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    fitted.save(folder)
    loaded = load_model(folder)
    assert type(loaded) is type(fitted)
    assert loaded.labels == fitted.labels
    assert loaded.params == fitted.params  # type: ignore[attr-defined]
    texts, _ = training_data(4)
    assert np.allclose(
        loaded.predict_proba(texts + UNSEEN), fitted.predict_proba(texts + UNSEEN), rtol=0, atol=1e-12
    )


def test_saved_folder_holds_no_pickles(fitted: TagModel, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    fitted.save(folder)
    names = sorted(p.name for p in folder.rglob("*") if p.is_file())
    assert MODEL_FILE in names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".joblib", ".pt", ".bin"))]
    # Only plain data formats: JSON and safetensors.
    assert {Path(n).suffix for n in names} <= {".json", ".safetensors"}
    info = read_model_info(folder)
    assert info["family"] == fitted.family
    assert info["labels"] == list(LABELS)


def test_model_json_records_family_and_params(fitted: TagModel, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m")
    info = json.loads((tmp_path / "m" / MODEL_FILE).read_text())
    assert info["params"] == PARAMS[fitted.family].model_dump(mode="json")
    assert "tagops_version" in info


def test_the_word_based_families_split_camel_case_names() -> None:
    assert RulesParams().cleaning.split_names and LinearParams().cleaning.split_names
    assert not TransformerParams().cleaning.split_names  # its tokenizer cuts a name into pieces itself


def test_a_model_saved_before_names_were_split_reads_text_as_it_was_trained(
    fitted: TagModel, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "m")
    path = tmp_path / "m" / MODEL_FILE
    info = json.loads(path.read_text())
    del info["params"]["cleaning"]["split_names"]
    path.write_text(json.dumps(info))
    loaded = load_model(tmp_path / "m")
    assert fitted.params.cleaning.split_names  # type: ignore[attr-defined]
    assert not loaded.params.cleaning.split_names  # type: ignore[attr-defined]


@pytest.mark.parametrize("family", ["rules", "linear"])
def test_unknown_label_in_fit_raises(family: str) -> None:
    texts, labels = training_data(3)
    labels[5] = "robotics"
    with pytest.raises(ValueError, match="robotics"):
        create_model(PARAMS[family]).fit(texts, labels)


@pytest.mark.parametrize("family", ["rules", "linear"])
def test_unfitted_model_refuses_to_predict_or_save(family: str, tmp_path: Path) -> None:
    model = create_model(PARAMS[family])
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict_proba(["text"])
    with pytest.raises(RuntimeError, match="not fitted"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_linear_model_trained_on_three_classes_gives_zero_to_the_fourth(tmp_path: Path) -> None:
    texts, labels = training_data(6)
    keep = [i for i, label in enumerate(labels) if label != "other"]
    params = PARAMS["linear"].model_copy(update={"label_guide": False})  # the guide states all four
    model = LinearModel(params).fit([texts[i] for i in keep], [labels[i] for i in keep])
    proba = model.predict_proba(UNSEEN)
    assert np.all(proba[:, LABELS.index("other")] == 0.0)
    assert np.allclose(proba.sum(axis=1), 1.0)
    model.save(tmp_path / "m")
    assert np.allclose(load_model(tmp_path / "m").predict_proba(UNSEEN), proba)


@pytest.mark.parametrize("classes", [4, 3, 2])
def test_linear_scoring_matches_the_scikit_learn_pipeline(classes: int, tmp_path: Path) -> None:
    # Prediction bypasses the pipeline (its overhead was 5 of 6 ms per item) and a loaded model never
    # builds one; the numbers must not move.
    texts, labels = training_data(6)
    keep = [i for i, label in enumerate(labels) if label in LABELS[:classes]]
    model = LinearModel(PARAMS["linear"]).fit([texts[i] for i in keep], [labels[i] for i in keep])
    queries = texts + UNSEEN + ["", "   ", "Ünïcödé tëxt — ß 中文", "word " * 500]
    expected = model.estimator_.predict_proba(model._clean(queries))
    columns = [LABELS.index(c) for c in model.estimator_.classes_]
    proba = model.predict_proba(queries)
    assert np.allclose(proba[:, columns], expected, rtol=0, atol=1e-12)
    assert np.allclose(model.predict_proba(queries[:1]), proba[:1], rtol=0, atol=1e-12)  # alone = in a batch
    assert model.predict_proba([]).shape == (0, len(LABELS))
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert np.allclose(loaded.predict_proba(queries), proba, rtol=0, atol=1e-12)
    loaded.save(tmp_path / "again")  # a loaded model saves what it was loaded from
    for name in ("vocabulary.json", "weights.safetensors", MODEL_FILE):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "m" / name).read_bytes()


#: Texts whose n-grams are easy to get wrong: empty and blank text, every kind of whitespace run,
#: one-letter and short words, case that changes length when lowered, letters outside ASCII.
ANALYZER_CASES = [
    "",
    " ",
    "a",
    "ab",
    "abc",
    "a b c d e",
    "  leading and   inner\t\tspace\n\n",
    "tabs\tand\u00a0no-break\u2003em\u3000ideographic spaces\x0bvertical\x1cseparators",
    "İSTANBUL ÉCOLE Straße ǅ ΣΊΣΥΦΟΣ",
    "中文 字符 日本語のテキスト",
    "under_score don't e-mail 3.14 x86_64 c++ c# r",
    "supercalifragilisticexpialidocious " * 3,
]


@pytest.mark.parametrize("ngram_range", [(1, 1), (1, 2), (2, 3), (1, 3), (3, 3)])
def test_word_analyzer_matches_scikit_learn(ngram_range: tuple[int, int]) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    from tagops.models.linear import WORD_TOKEN_PATTERN

    ours = word_analyzer(ngram_range)
    theirs = TfidfVectorizer(
        analyzer="word", ngram_range=ngram_range, token_pattern=WORD_TOKEN_PATTERN
    ).build_analyzer()
    texts, _ = training_data(3)
    for text in [*ANALYZER_CASES, *texts, *_random_texts(200)]:
        assert ours(text) == theirs(text), text


@pytest.mark.parametrize("ngram_range", [(1, 1), (2, 5), (3, 3), (1, 4), (4, 6)])
def test_char_wb_analyzer_matches_scikit_learn(ngram_range: tuple[int, int]) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    ours = char_wb_analyzer(ngram_range)
    theirs = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range).build_analyzer()
    texts, _ = training_data(3)
    for text in [*ANALYZER_CASES, *texts, *_random_texts(200)]:
        assert ours(text) == theirs(text), text


def _random_texts(count: int) -> list[str]:
    """Words of 1-8 characters from a mixed alphabet, joined by runs of assorted whitespace."""
    rng = np.random.default_rng(7)
    letters = list("abcXYZéİßǅ中_-.'0")
    spaces = [" ", "  ", "\t", "\n", "\u00a0", "\u2003", " \u3000 ", "\x1c"]
    texts = []
    for _ in range(count):
        words = ["".join(rng.choice(letters, size=rng.integers(1, 9))) for _ in range(rng.integers(0, 8))]
        text = ""
        for word in words:
            text += str(rng.choice(spaces)) + word
        texts.append(text)
    return texts


def test_a_loaded_linear_model_predicts_without_importing_scikit_learn(tmp_path: Path) -> None:
    # Serving loads models in every replica; scikit-learn's import (with scipy.stats) costs about a
    # second of each start, and a saved model is plain data that numpy scores.
    texts, labels = training_data(4)
    LinearModel(PARAMS["linear"]).fit(texts, labels).save(tmp_path / "m")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tagops.models import load_model\n"
        f"proba = load_model(Path({str(tmp_path / 'm')!r})).predict_proba(['Object detection with YOLO'])\n"
        "assert abs(proba.sum() - 1) < 1e-9\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy'}))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"


def test_load_model_dispatches_on_model_json(tmp_path: Path) -> None:
    texts, labels = training_data(4)
    RulesModel(PARAMS["rules"]).fit(texts, labels).save(tmp_path / "a")
    LinearModel(PARAMS["linear"]).fit(texts, labels).save(tmp_path / "b")
    assert isinstance(load_model(tmp_path / "a"), RulesModel)
    assert isinstance(load_model(tmp_path / "b"), LinearModel)
    info = json.loads((tmp_path / "a" / MODEL_FILE).read_text())
    (tmp_path / "a" / MODEL_FILE).write_text(json.dumps({**info, "family": "quantum"}))
    with pytest.raises(ValueError, match="quantum"):
        load_model(tmp_path / "a")


def test_load_model_from_a_folder_without_model_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a tagops model folder"):
        load_model(tmp_path)


def test_a_damaged_model_folder_is_one_error_naming_it(tmp_path: Path) -> None:
    from tagops.errors import TagopsError

    texts, labels = training_data(4)
    folder = tmp_path / "linear"
    LinearModel(PARAMS["linear"]).fit(texts, labels).save(folder)
    weights = folder / "weights.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[:100])  # a copy cut short
    with pytest.raises(TagopsError, match=r"linear: damaged model folder, cannot load it \(.+\)$"):
        load_model(folder)
    weights.unlink()  # a copy that left a file behind
    with pytest.raises(TagopsError, match=r"linear: damaged model folder, cannot load it \(.*weights"):
        load_model(folder)
    weights.write_bytes(intact)
    (folder / MODEL_FILE).write_text("{not json")
    with pytest.raises(TagopsError, match=r"model\.json: damaged, not a model's descriptor \(Expecting"):
        load_model(folder)
    (folder / MODEL_FILE).write_text("[]")
    with pytest.raises(TagopsError, match=r"model\.json: damaged, not a model's descriptor \(no 'family'\)"):
        read_model_info(folder)


def test_rules_explain_returns_the_fired_keywords() -> None:
    texts, labels = training_data()
    model = RulesModel(RulesParams(mined_terms_per_class=0)).fit(texts, labels)  # seed keywords only
    fired = model.explain("Object detection on VIDEO frames, deployed with Docker!")
    assert set(fired) == set(LABELS)
    assert fired["computer-vision"] == ["detection", "object detection", "video"]
    assert fired["mlops"] == ["docker"]
    assert fired["natural-language-processing"] == []
    assert fired["other"] == []
    for label, words in fired.items():
        assert set(words) <= set(model.keywords_[label])


def test_rules_keep_every_seed_keyword_with_at_least_the_seed_weight() -> None:
    texts, labels = training_data()
    params = RulesParams(min_term_count=2, seed_weight=2.5)
    model = RulesModel(params).fit(texts, labels)
    for label, seeds in SEED_KEYWORDS.items():
        for term in seeds:
            assert model.keywords_[label][term] >= params.seed_weight


def test_rules_mine_discriminative_terms() -> None:
    texts, labels = training_data()
    model = RulesModel(RulesParams(min_term_count=2, mined_terms_per_class=50)).fit(texts, labels)
    # "tabular" and "kubernetes" are no seed keywords but appear only in their class.
    assert model.keywords_["other"]["tabular"] > 0
    assert model.keywords_["mlops"]["kubernetes"] > 0
    assert "tabular" not in model.keywords_["mlops"]


def test_rules_temperature_flattens_probabilities() -> None:
    texts, labels = training_data()
    sharp = RulesModel(RulesParams(temperature=0.5)).fit(texts, labels)
    flat = RulesModel(RulesParams(temperature=4.0)).fit(texts, labels)
    probe = ["image segmentation with a camera"]
    assert sharp.predict_proba(probe).max() > flat.predict_proba(probe).max()


def test_rules_file_is_readable_json(tmp_path: Path) -> None:
    texts, labels = training_data()
    RulesModel().fit(texts, labels).save(tmp_path / "m")
    rules = json.loads((tmp_path / "m" / "rules.json").read_text())
    assert set(rules) == {"log_prior", "keywords"}
    assert set(rules["keywords"]) == set(LABELS)


def test_linear_model_learns_the_label_guide_statements() -> None:
    texts, labels = training_data(6)
    with_guide = LinearModel(PARAMS["linear"].model_copy(update={"label_guide": True})).fit(texts, labels)
    without = LinearModel(PARAMS["linear"].model_copy(update={"label_guide": False})).fit(texts, labels)
    statement = ["spiking or brain-inspired networks"]  # an `other` statement of the guide, unseen here
    other = LABELS.index("other")
    assert with_guide.predict_proba(statement)[0, other] > without.predict_proba(statement)[0, other]


def test_linear_model_learns_the_written_other_rows_once() -> None:
    from tagops.data.augment import other_topics_texts

    texts, labels = training_data(6)
    params = PARAMS["linear"].model_copy(update={"label_guide": False})
    with_rows = LinearModel(params.model_copy(update={"other_topics": True}))
    written = other_topics_texts()
    assert with_rows._training_rows(texts, labels) == (texts + written, labels + ["other"] * len(written))
    # rows given already (``augmentation.other_topics`` adds them for every family) are not added twice
    given = texts + written[:10]
    tags = labels + ["other"] * 10
    assert with_rows._training_rows(given, tags) == (
        given + written[10:],
        tags + ["other"] * (len(written) - 10),
    )

    with_rows.fit(texts, labels)
    without = LinearModel(params).fit(texts, labels)
    unseen = ["Gradient boosting for a churn table", "Music genre recognition from audio clips"]
    other = LABELS.index("other")
    assert (with_rows.predict_proba(unseen)[:, other] > without.predict_proba(unseen)[:, other] + 0.2).all()
