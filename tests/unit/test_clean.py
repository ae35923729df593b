"""Text cleaning: properties checked with hypothesis, plus build_text and count_words."""

from __future__ import annotations

import re
import string
import timeit
import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tagops.data.clean import (
    MODEL_TEXT_CHARS,
    URL_PATTERN,
    _keep_prefix,
    build_text,
    clean_text,
    clean_texts,
    count_words,
    english_stopwords,
    match_key,
    split_identifiers,
)

pytestmark = pytest.mark.unit

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

URLS = (
    "https://github.com/foo/bar",
    "http://github.com/foo/bar?tab=readme#usage",
    "HTTPS://GitHub.com/Foo/Bar.",
    "https://www.github.com/foo/bar/blob/main/README.md",
    "www.github.com/foo/bar",
)
URL_TOKENS = {"github", "com", "http", "https", "www", "foo", "bar", "tab", "readme", "blob", "main", "md"}

word = st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=10)
plain_word = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=10).filter(
    lambda w: w.lower() not in URL_TOKENS and "usage" not in w.lower()
)
options = st.fixed_dictionaries(
    {
        "lower": st.booleans(),
        "remove_urls": st.booleans(),
        "remove_markup": st.booleans(),
        "split_names": st.booleans(),
        "stopwords": st.sampled_from([(), ("the", "and", "a"), tuple(sorted(english_stopwords()))]),
    }
)


@PROPERTY
@given(text=st.text(), kwargs=options)
def test_clean_is_idempotent(text: str, kwargs: dict) -> None:
    once = clean_text(text, **kwargs)
    assert clean_text(once, **kwargs) == once


@PROPERTY
@given(text=st.text())
@example(text="\u13a0")  # Cherokee A: case-folds to itself, though lower() maps it to U+AB70
@example(text="\u01f0")  # j with caron: casefold() decomposes it, NFKC composes it again
@example(text="Stra\u00dfe")  # sharp s folds to "ss"
def test_output_is_casefolded_single_spaced_and_stripped(text: str) -> None:
    """The output is a fixed point of the cleaning's case fold (``casefold`` then NFKC).

    ``str.lower()`` is the wrong oracle: Unicode case folding, which the cleaning uses so that every case
    variant of a word gives one token, maps Cherokee small letters to the capitals (``lower()`` goes the
    other way), and ``casefold()`` alone leaves some letters decomposed that NFKC composes again.
    """
    out = clean_text(text)
    assert unicodedata.normalize("NFKC", out.casefold()) == out
    assert "  " not in out
    assert out == out.strip()
    assert all(re.fullmatch(r"[^\W_]+", token) for token in out.split(" ") if out)


@PROPERTY
@given(text=st.text(), stop=st.lists(word, max_size=5))
def test_given_stopwords_never_survive(text: str, stop: list[str]) -> None:
    tokens = clean_text(text, stopwords=stop).split()
    assert not set(tokens) & set(stop)


@PROPERTY
@given(
    before=st.lists(plain_word, max_size=6), after=st.lists(plain_word, max_size=6), url=st.sampled_from(URLS)
)
def test_url_is_removed_entirely(before: list[str], after: list[str], url: str) -> None:
    text = " ".join(before) + f" {url} " + " ".join(after)
    tokens = clean_text(text).split()
    assert not {"github", "com", "http", "https"} & set(tokens)
    # Exactly the surrounding words are left, in order.
    assert tokens == [w.lower() for w in before + after]


@PROPERTY
@given(before=st.lists(word, max_size=5), after=st.lists(word, max_size=5), url=st.sampled_from(URLS))
def test_url_removal_equals_text_without_url(before: list[str], after: list[str], url: str) -> None:
    left, right = " ".join(before), " ".join(after)
    assert clean_text(f"{left} {url} {right}") == clean_text(f"{left} {right}")


def test_url_kept_as_words_when_url_removal_is_off() -> None:
    assert (
        clean_text("see https://github.com/foo/bar now", remove_urls=False)
        == "see https github com foo bar now"
    )


def test_url_inside_punctuation_vanishes() -> None:
    assert clean_text("Code (https://github.com/foo/bar), docs: www.example.org/x.") == "code docs"


def test_lower_false_keeps_case() -> None:
    assert clean_text("Hello, World!", lower=False) == "Hello World"


def test_punctuation_and_underscores_become_separators() -> None:
    assert clean_text("state-of-the-art_model: v2.0!!") == "state of the art model v2 0"


@pytest.mark.parametrize(
    ("upper", "lower"),
    [
        ("MLOPS Pipeline", "mlops pipeline"),
        ("STRASSE", "stra\u00dfe"),
        (
            "\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3",
            "\u03c3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2",
        ),  # final sigma
        ("\u13e3\u13b3\u13a9", "\uabb3\uab83\uab79"),  # Cherokee folds to the capitals
    ],
)
def test_case_variants_give_the_same_tokens(upper: str, lower: str) -> None:
    assert clean_text(upper) == clean_text(lower)
    assert clean_text(upper, lower=False) != clean_text(lower, lower=False)


def test_unicode_is_normalised() -> None:
    # Full-width letters and a ligature fold to their plain forms (NFKC), then to lower case.
    assert clean_text("ＢＥＲＴ ﬁne-tuning") == "bert fine tuning"


def test_clean_texts_removes_english_stopwords_only_when_asked() -> None:
    texts = ["The model and the data", "A guide to MLOps"]
    assert clean_texts(texts, remove_stopwords=True) == ["model data", "guide mlops"]
    assert clean_texts(texts) == ["the model and the data", "a guide to mlops"]


def test_english_stopwords_is_a_frozenset_of_common_words() -> None:
    stop = english_stopwords()
    assert isinstance(stop, frozenset)
    assert {"the", "and", "of"} <= stop
    assert "model" not in stop


@pytest.mark.parametrize(
    ("title", "description", "expected"),
    [
        ("Title", "Description", "Title Description"),
        ("Title", "", "Title"),
        ("", "Description", "Description"),
        ("", "", ""),
        ("Title", None, "Title"),
        (None, "Description", "Description"),
        ("  Title ", " Description  ", "Title   Description"),
    ],
)
def test_build_text(title: str | None, description: str | None, expected: str) -> None:
    assert build_text(title, description) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("   ", 0), ("one", 1), ("one two  three", 3), ("a\tb\nc", 3), ("state-of-the-art model", 2)],
)
def test_count_words(text: str, expected: int) -> None:
    assert count_words(text) == expected


@PROPERTY
@given(
    words=st.lists(st.text(alphabet=st.characters(blacklist_categories=["Zs", "Zl", "Zp", "Cc"]), min_size=1))
)
def test_count_words_counts_whitespace_separated_words(words: list[str]) -> None:
    words = [w for w in words if w.split() == [w]]
    assert count_words(" ".join(words)) == len(words)


# The pattern URL removal used before it was made linear: the reference for what must be removed.
QUADRATIC_URL_PATTERN = re.compile(r"(?:[a-z][a-z0-9+.\-]*://|www\.)\S+", re.IGNORECASE)
url_alphabet = st.sampled_from([*"ab1+.-:/w W\tzK9", "://", "www.", "http://", "\u212a", "\u0130"])


@PROPERTY
@given(parts=st.lists(url_alphabet, max_size=40))
@example(parts=["9", "http://", "x"])
@example(parts=["1", "w", "w", "w", ".", "x", "://", "y"])
@example(parts=["a", "b", ".", "www.", "c"])
def test_linear_url_removal_removes_what_the_plain_pattern_removes(parts: list[str]) -> None:
    text = "".join(parts)
    assert URL_PATTERN.sub(_keep_prefix, text) == QUADRATIC_URL_PATTERN.sub(" ", text)


@pytest.mark.parametrize(
    "unit",
    [
        "a",
        "ab1",
        "a://",
        "www.",
        "http://x ",
        "a.b-c+d",
        "é",
        "![",
        "[![a](",
        "![a](b",
        "<a ",
        "<a b",
        "&amp;",
        "aB",
        "ABc",
    ],
    ids=repr,
)
def test_cleaning_time_grows_linearly_with_the_text(unit: str) -> None:
    """Twenty times the text may not take much more than twenty times as long (quadratic: 400x).

    Each size counts its fastest of five runs: a test process that loses the CPU for a moment on a busy
    machine makes single runs slower, never faster.
    """

    def seconds(repeat: int) -> float:
        text = unit * repeat
        return min(timeit.repeat(lambda: clean_text(text, split_names=True), number=1, repeat=5))

    small, large = seconds(1_000), seconds(20_000)
    assert large < 0.5 and large < 60 * max(small, 1e-5), (small, large)


@PROPERTY
@given(text=st.text(max_size=300), max_chars=st.integers(min_value=1, max_value=120))
@example(text="straße " * 20, max_chars=37)
@example(text="\ufdfa" * 3, max_chars=20)
def test_a_capped_text_is_short_clean_and_unchanged_by_cleaning_again(text: str, max_chars: int) -> None:
    cleaned = clean_text(text, max_chars=max_chars)
    assert len(cleaned) <= max_chars
    assert cleaned == cleaned.strip()
    assert clean_text(cleaned, max_chars=max_chars) == cleaned
    assert clean_text(cleaned) == cleaned


@PROPERTY
@given(text=st.text(max_size=200))
def test_a_text_within_the_cap_is_cleaned_as_without_it(text: str) -> None:
    uncapped = clean_text(text)
    if len(unicodedata.normalize("NFKC", text)) <= 400 and len(uncapped) <= 400:
        assert clean_text(text, max_chars=400) == uncapped


def test_models_read_the_start_of_a_long_text_only() -> None:
    long = "vision " * 10_000
    (cleaned,) = clean_texts([long])
    assert len(cleaned) <= MODEL_TEXT_CHARS and cleaned.startswith("vision vision")
    expanding = "\ufdfa" * 10_000  # NFKC: eighteen characters each
    (cleaned,) = clean_texts([expanding])
    assert 0 < len(cleaned) <= MODEL_TEXT_CHARS
    assert min(timeit.repeat(lambda: clean_texts([expanding]), number=1, repeat=3)) < 0.05


README_TOP = (
    "# Diffusion2Vec\n"
    "[![Build Status](https://travis-ci.org/x/d2v.svg?branch=master)](https://travis-ci.org/x/d2v) "
    "[![License: MIT](https://img.shields.io/badge/License-MIT-yellow.svg)](https://opensource.org/licenses/MIT)\n"
    '<p align="center"><img src="https://raw.githubusercontent.com/x/d2v/main/logo.png" width="300"></p>\n'
    "**Graph embeddings** for R&amp;D, with [docs](https://d2v.io) &mdash; a < b 🚀"
)


def test_readme_markup_leaves_only_the_words_of_the_text() -> None:
    assert clean_text(README_TOP) == "diffusion2vec graph embeddings for r d with docs a b"
    # Off, the markup's words stay: what the model would read without it.
    kept = clean_text(README_TOP, remove_markup=False).split()
    assert {"build", "status", "license", "mit", "align", "center", "width", "300", "amp"} <= set(kept)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("![logo](logo.png) Segment images", "segment images"),  # an image outside a link
        ("[![x](a.svg)](b) [![y](c.svg)](d) OCR", "ocr"),  # badges side by side
        ("<b>bold</b> and <br/> breaks", "bold and breaks"),  # a tag's text stays
        ("x<y and y>z, 3 < 4", "x y and y z 3 4"),  # comparisons are not tags
        ("BERT <mask> token", "bert mask token"),  # nor is what is not an HTML element
        ("see [the docs](https://d.io)", "see the docs"),  # a plain link keeps its words
        ("&lt;b&gt;NER&lt;/b&gt; tagger", "ner tagger"),  # escaped tags are tags too
        ("![unclosed alt text and a (paren", "unclosed alt text and a paren"),
    ],
)
def test_markup_removal(text: str, expected: str) -> None:
    assert clean_text(text) == expected


def test_match_keys_keep_markup_as_words() -> None:
    """Labelled texts are matched as they were written: cleaning models' input never changes a key."""
    assert match_key("<b>NER</b>", "") == "b ner b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("TextAttack", "text attack"),
        ("DeepFaceLab: swap faces", "deep face lab swap faces"),
        ("BERTModel and OCRNet", "bert model and ocr net"),  # capitals before a capitalised word
        ("YOLOv4 detects LLMs and GANs", "yolov4 detects llms and gans"),  # a version or a plural: whole
        ("TRANSFORMER TTS", "transformer tts"),  # capitals alone are one word
        ("Graph Neural Networks", "graph neural networks"),  # nothing joined, nothing split
        ("see github.com/DeepFace", "see github com deep face"),  # a bare address is text like any other
    ],
)
def test_camel_case_names_are_split_into_their_words(text: str, expected: str) -> None:
    assert clean_text(text, split_names=True) == expected
    assert clean_text(text, split_names=False) == clean_text(text)  # off by default


def test_split_names_runs_before_case_is_folded_and_keeps_case_when_asked() -> None:
    assert clean_text("TransformerTTS", lower=False, split_names=True) == "Transformer TTS"
    assert split_identifiers("PixelLib, the library") == "Pixel Lib, the library"
    assert match_key("TextAttack", "") == "textattack"  # labelled texts are matched as written
