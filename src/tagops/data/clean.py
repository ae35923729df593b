"""Text cleaning: pure functions, shared by training, evaluation and serving (saved with each model).

Fixes the reference system's bug: it stripped punctuation before removing URLs, so a link survived as
"github com foo". Here URLs go first, while they are still recognisable; before them, the markup a
README or a web page wraps a summary in (badges, HTML tags, entities), whose words name no topic.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tagops.config import CleaningConfig

#: A URL: a scheme (a letter, then letters, digits, ``+``, ``.`` or ``-``) and ``://``, or ``www.``, then
#: everything up to whitespace. The scheme is matched only from the start of a run of scheme characters
#: (the look-behind), and possessively, with any leading digits or signs kept (group 1): so each run is
#: scanned once and removing URLs takes time linear in the text. A plain ``[a-z][a-z0-9+.-]*://`` would
#: rescan the rest of a long run of letters from every position in it (quadratic). It removes exactly what
#: that pattern removes (``tests/unit/test_clean.py`` checks both on random text).
URL_PATTERN = re.compile(r"(?<![a-z0-9+.\-])([0-9+.\-]*+)[a-z][a-z0-9+.\-]*+://\S+|www\.\S+", re.IGNORECASE)
NON_WORD_PATTERN = re.compile(r"[\W_]+")
#: A Markdown image, and the link around it where there is one: a README's badges
#: (``[![Build Status](…badge.svg)](…)``) and logos. Its alt text goes with it: "Build Status", "PyPI
#: version" or "License: MIT" say nothing of a topic. Alt text and addresses are bounded, so each ``![``
#: is scanned a bounded length and removal stays linear in the text (badge addresses are far shorter).
MARKDOWN_IMAGE_PATTERN = re.compile(r"\[?!\[[^\]\n]{0,200}\]\([^)\s]{0,500}\)(?:\]\([^)\s]{0,500}\))?")
#: The HTML elements READMEs and project pages use (GitHub renders these): a tag is one of them, so
#: "<mask>" or "x<y and y>z" are not tags.
# fmt: off
HTML_ELEMENTS = (
    "a", "abbr", "b", "blockquote", "br", "center", "code", "dd", "del", "details", "div", "dl", "dt", "em",
    "figcaption", "figure", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd",
    "li", "ol", "p", "picture", "pre", "q", "s", "samp", "small", "source", "span", "strike", "strong",
    "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var",
    "video",
)
# fmt: on
#: An HTML tag with its attributes (``<p align="center">``, ``<img src=… width="300">``, ``</b>``). A
#: scan stops at the next ``<``, so removal is linear in the text too.
HTML_TAG_PATTERN = re.compile(rf"</?(?:{'|'.join(HTML_ELEMENTS)})\b(?:\s[^<>]*)?/?>", re.IGNORECASE)
#: Where two words of a CamelCase name meet: a lowercase letter before a capital ("Text|Attack",
#: "Deep|Face|Lab"), or a run of capitals before a capitalised word of three letters or more
#: ("BERT|Model", "OCR|Net"), so "YOLOv4", "LLMs" or "GANs" stay whole. Fixed-width look-arounds only:
#: one scan, linear in the text.
IDENTIFIER_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z]{2})")

#: Characters of a project's text that models read (:func:`clean_texts`): the title and the start of the
#: description. Five times the longest text in the training data, and more than the transformer reads
#: anyway (128 tokens); the topic is stated long before it. It bounds what one item costs whatever a
#: client sends: without it, a field at the request limit of characters that NFKC expands eighteenfold
#: (U+FDFA) becomes 180,000 characters to cut into n-grams (``benchmarks/serve_hostile.py``).
MODEL_TEXT_CHARS = 2000


def _keep_prefix(match: re.Match[str]) -> str:
    """A URL becomes one space; digits or signs before its scheme stay (see :data:`URL_PATTERN`)."""
    return (match.group(1) or "") + " "


@cache
def english_stopwords() -> frozenset[str]:
    """scikit-learn's English stop-word list (maintained, no NLTK download needed)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def build_text(title: str, description: str) -> str:
    """The model input: title and description joined by one space (missing parts count as empty)."""
    return f"{title or ''} {description or ''}".strip()


def match_key(title: str, description: str) -> str:
    """What two labelled texts must share to count as the same text: title and description cleaned.

    Unicode form, case, punctuation and runs of spaces do not tell texts apart ("Deep  Learning!" is
    "deep learning"); URLs and markup are kept as their words. Linear in the text's length.
    """
    return clean_text(build_text(title, description), remove_urls=False, remove_markup=False)


def strip_markup(text: str) -> str:
    """``text`` without README and HTML markup: entities decoded, Markdown images and HTML tags removed.

    The words around them stay (a tag's text, a link's words); each image or tag becomes one space.
    """
    text = html.unescape(text) if "&" in text else text
    text = MARKDOWN_IMAGE_PATTERN.sub(" ", text) if "![" in text else text
    return HTML_TAG_PATTERN.sub(" ", text) if "<" in text else text


def split_identifiers(text: str) -> str:
    """``text`` with the words of each CamelCase name apart: "TextAttack" is "Text Attack".

    Projects are often named so (``DeepFaceLab``, ``PixelLib``, ``TransformerTTS``), and a name is often
    all a title holds; joined, its words are one token no other text shares. The joined name is not
    kept beside its words: that was measured too, and lost cross-validated F1 (the words alone did not).
    """
    return IDENTIFIER_BOUNDARY.sub(" ", text)


def clean_text(
    text: str,
    *,
    lower: bool = True,
    remove_urls: bool = True,
    remove_markup: bool = True,
    split_names: bool = False,
    stopwords: Iterable[str] = (),
    max_chars: int | None = None,
) -> str:
    """Normalise ``text`` to space-separated word tokens.

    Order matters: Unicode is normalised (NFKC), markup (:func:`strip_markup`) and then URLs removed
    before punctuation is, so badges and links vanish entirely; CamelCase names are split into their
    words (``split_names``, :func:`split_identifiers`) while case still tells them apart; then case is
    folded, every non-word character becomes a space, and stop words are dropped. The result is
    idempotent: cleaning a cleaned text changes nothing.

    Case is folded with ``str.casefold`` (Unicode caseless matching), not ``str.lower``: every case variant
    of a word gives the same token ("STRASSE" and "straße" both give "strasse"). The two differ on some
    scripts (Cherokee folds to its capital letters), so a cleaned text is not always equal to its
    ``lower()``; it is equal to its own case fold, which is what training and serving both rely on.

    With ``max_chars``, only the start of the text is read: at most that many characters before and
    after Unicode normalisation (which can expand a character up to eighteen times), and the result is
    cut to whole tokens within it. Cleaning then costs at most a fixed amount per text, and a cleaned text
    is still unchanged by cleaning it again.
    """
    if max_chars is not None:
        text = unicodedata.normalize("NFKC", text[:max_chars])[:max_chars]
    text = unicodedata.normalize("NFKC", text)
    if remove_markup:
        text = strip_markup(text)
    if remove_urls:
        text = URL_PATTERN.sub(_keep_prefix, text)
    if split_names:
        text = split_identifiers(text)
    if lower:
        text = text.casefold()
    text = unicodedata.normalize("NFKC", text)
    tokens = NON_WORD_PATTERN.sub(" ", text).split()
    stop = stopwords if isinstance(stopwords, frozenset | set) else frozenset(stopwords)
    cleaned = " ".join(token for token in tokens if token not in stop)
    if max_chars is not None and len(cleaned) > max_chars:  # case folding can lengthen a text ("ß": "ss")
        cleaned = cleaned[:max_chars].rstrip()
    return cleaned


def clean_texts(
    texts: Iterable[str],
    *,
    lower: bool = True,
    remove_urls: bool = True,
    remove_markup: bool = True,
    split_names: bool = False,
    remove_stopwords: bool = False,
    max_chars: int | None = MODEL_TEXT_CHARS,
) -> list[str]:
    """Clean many texts with one configuration (the form models store in their artifact).

    Models read the first :data:`MODEL_TEXT_CHARS` characters of each text, in training and in serving.
    """
    stop = english_stopwords() if remove_stopwords else frozenset()
    return [
        clean_text(
            text,
            lower=lower,
            remove_urls=remove_urls,
            remove_markup=remove_markup,
            split_names=split_names,
            stopwords=stop,
            max_chars=max_chars,
        )
        for text in texts
    ]


def clean_as(texts: Iterable[str], cleaning: CleaningConfig) -> list[str]:
    """Clean many texts as a model's ``cleaning`` config says (every family, in training and serving)."""
    return clean_texts(
        texts,
        lower=cleaning.lower,
        remove_urls=cleaning.remove_urls,
        remove_markup=cleaning.remove_markup,
        split_names=cleaning.split_names,
        remove_stopwords=cleaning.remove_stopwords,
    )


def count_words(text: str) -> int:
    """Whitespace word count of the raw text (used by the short-text slice)."""
    return len(text.split())
