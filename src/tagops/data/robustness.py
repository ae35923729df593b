"""Transformed copies of a labelled frame, for measuring how a model holds up on text unlike its training set.

Projects in the wild are often described by a package-style name and one terse line, a truncated summary, or
text with odd casing and punctuation; the holdout is written like the training set. Each transform rewrites
``title`` and ``description`` of every row and leaves every other column (``tag`` included) as it is:

- ``title_only``: the description removed.
- ``description_only``: the title removed.
- ``package_title``: the title as a package name (``graph-wavelet-neural``, ``nerf_neural_radiance``).
- ``identifier_title``: the title as a CamelCase name, as repositories are named (``GraphWaveletNeural``).
- ``one_line``: the description cut to its first sentence.
- ``cut_mid_word``: the description cut inside a word, within its first 60 characters.
- ``terse``: a package name and the first words of one sentence, 12 words in all.
- ``case_noise``: each word in lower, upper or capitalised case, or as it was.
- ``punctuation_noise``: punctuation dropped or doubled, spaces added.
- ``readme_markup``: the title as a README heading, the description under its badges and logo.

``transform_frame(frame, name, seed)`` applies one of them; the same frame and seed always give the same
copy. A row left with neither title nor description text (``description_only`` on a row without a
description) is dropped rather than kept empty: ``len(frame) - len(result)`` rows, and the result keeps the
source's index so every remaining row can be paired with its original. Pure functions, no model.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from tagops.errors import TagopsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Transform = Callable[["pd.DataFrame", "np.random.Generator"], "pd.DataFrame"]

#: Longest package name, in words (``pip``-style names rarely carry more).
PACKAGE_WORDS = 3
#: ``cut_mid_word`` cuts at most this many characters in, and at least ``CUT_MIN_CHARS`` where it can.
CUT_MAX_CHARS = 60
CUT_MIN_CHARS = 20
#: ``terse`` keeps this many whitespace words in all: the package name and the start of one sentence.
TERSE_WORDS = 12

WORD_PATTERN = re.compile(r"[^\W_]+")
TOKEN_PATTERN = re.compile(r"\S+")
#: Where a sentence may end: ``.``, ``!`` or ``?`` (closing quotes or brackets allowed), whitespace, then a
#: capital, digit, quote or bracket; so "v1.2" and "e.g. the" do not end one (see ``sentence_breaks``).
SENTENCE_BOUNDARY = re.compile(r"[.!?][\"')\]]*(\s+)(?=[A-Z0-9\"'(\[])")
#: Words whose final period does not end a sentence ("e.g. PyTorch").
ABBREVIATIONS = frozenset(
    {"e.g.", "i.e.", "etc.", "vs.", "cf.", "al.", "fig.", "eq.", "no.", "approx.", "dr."}
)
PACKAGE_SEPARATORS = ("-", "_", "")
#: What a README puts above its first line: status badges (Markdown images inside links, alt text and
#: all), an HTML block centring a logo, and emphasis and an emoji around the summary. ``{slug}`` is the
#: title as a package name.
README_BADGES = (
    "[![Build Status](https://github.com/someone/{slug}/actions/workflows/ci.yml/badge.svg)]"
    "(https://github.com/someone/{slug}/actions)",
    "[![PyPI version](https://img.shields.io/pypi/v/{slug}.svg)](https://pypi.org/project/{slug}/)",
    "[![License: MIT](https://img.shields.io/badge/License-MIT-yellow.svg)](https://opensource.org/licenses/MIT)",
    "[![Downloads](https://static.pepy.tech/badge/{slug}/month)](https://pepy.tech/project/{slug})",
    "[![codecov](https://codecov.io/gh/someone/{slug}/branch/main/graph/badge.svg)]"
    "(https://codecov.io/gh/someone/{slug})",
)
README_LOGO = (
    '<p align="center">\n  <img src="https://raw.githubusercontent.com/someone/{slug}/main/docs/logo.png" '
    'width="300" alt="{slug} logo">\n</p>'
)
README_EMOJI = ("🚀", "✨", "🔥", "📦", "🤖", "⚡")


def name_words(title: str) -> list[str]:
    """The words a name is made of: at most three words of ``title``, stop words dropped.

    Stop words are kept only when nothing else is left; a title without a word gives ``[]``.
    """
    from tagops.data.clean import english_stopwords

    words = WORD_PATTERN.findall(title)
    kept = [w for w in words if w.casefold() not in english_stopwords()] or words
    return kept[:PACKAGE_WORDS]


def package_name(title: str) -> str:
    """The title as a package name: at most three lowercase words, stop words dropped, one separator.

    The separator (``-``, ``_`` or none) is chosen from the title itself, so a title always gets the same
    name.
    """
    separator = PACKAGE_SEPARATORS[zlib.crc32(title.encode("utf-8")) % len(PACKAGE_SEPARATORS)]
    return separator.join(w.casefold() for w in name_words(title))


def identifier_name(title: str) -> str:
    """The title as a CamelCase name (``TextAttack``, ``DeepFaceLab``): its name words, each capitalised.

    Only a word's first letter changes; the rest stays as written, so ``BERT`` or ``YOLOv4`` keep theirs.
    """
    return "".join(w[:1].upper() + w[1:] for w in name_words(title))


def sentence_breaks(line: str) -> list[int]:
    """Where each sentence of ``line`` but the last ends (``SENTENCE_BOUNDARY`` not after an abbreviation)."""
    return [
        match.start(1)
        for match in SENTENCE_BOUNDARY.finditer(line)
        if line[: match.start(1)].split()[-1].casefold() not in ABBREVIATIONS
    ]


def first_sentence(text: str) -> str:
    """The first sentence of the first non-blank line (see ``sentence_breaks``), stripped."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    breaks = sentence_breaks(line)
    return (line[: breaks[0]] if breaks else line).strip()


def first_words(text: str, count: int) -> str:
    """The first ``count`` whitespace-separated words of ``text``, joined by single spaces."""
    return " ".join(text.split()[:count]) if count > 0 else ""


def cut_inside_word(
    text: str, rng: np.random.Generator, *, max_chars: int = CUT_MAX_CHARS, min_chars: int = CUT_MIN_CHARS
) -> str:
    """``text`` cut between two letters or digits of one word, at most ``max_chars`` characters in.

    The cut falls at ``min_chars`` or later where the text allows it. A text with no such point (no word
    of two characters within ``max_chars``) is only shortened to ``max_chars``.
    """
    inside = [
        i for i in range(1, min(len(text), max_chars + 1)) if text[i - 1].isalnum() and text[i].isalnum()
    ]
    if not inside:
        return text[:max_chars].rstrip()
    later = [i for i in inside if i >= min_chars] or inside
    return text[: later[int(rng.integers(len(later)))]]


def noisy_case(text: str, rng: np.random.Generator) -> str:
    """Each whitespace-separated word in lower, upper or capitalised case, or left as it is."""
    cases: tuple[Callable[[str], str], ...] = (str.lower, str.upper, str.capitalize, str)

    def recase(match: re.Match[str]) -> str:
        return cases[int(rng.integers(len(cases)))](match.group())

    return TOKEN_PATTERN.sub(recase, text)


def noisy_punctuation(text: str, rng: np.random.Generator) -> str:
    """Each punctuation mark dropped (half the time) or doubled (a quarter); one space in three doubled."""
    out: list[str] = []
    for char, draw in zip(text, rng.random(len(text)), strict=True):
        if unicodedata.category(char).startswith("P"):
            out.append("" if draw < 0.5 else char * 2 if draw < 0.75 else char)
        elif char == " ":
            out.append("  " if draw < 1 / 3 else char)
        else:
            out.append(char)
    return "".join(out)


# ---------------------------------------------------------------------------------------- transforms
def _rewrite(
    frame: pd.DataFrame,
    *,
    title: Callable[[str], str] | None = None,
    description: Callable[[str], str] | None = None,
) -> pd.DataFrame:
    """A copy of ``frame`` with each title and description passed through its function (if given)."""
    result = frame.copy()
    for column, rewrite in (("title", title), ("description", description)):
        values = result[column].fillna("").astype(str)
        result[column] = [rewrite(v) for v in values] if rewrite is not None else values
    return result


def title_only(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The title alone: every description empty."""
    return _rewrite(frame, description=lambda _: "")


def description_only(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The description alone: every title empty."""
    return _rewrite(frame, title=lambda _: "")


def package_title(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The title rewritten as a package name (at most three words, one separator, no spaces)."""
    return _rewrite(frame, title=package_name)


def identifier_title(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The title rewritten as a CamelCase name (at most three capitalised words, joined)."""
    return _rewrite(frame, title=identifier_name)


def one_line(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The description cut to its first sentence."""
    return _rewrite(frame, description=first_sentence)


def cut_mid_word(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The description cut inside a word, within its first 60 characters (a truncated summary)."""
    return _rewrite(frame, description=lambda text: cut_inside_word(text, rng))


def terse(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A package name and the start of the first sentence: 12 words in all, as summaries in the wild."""
    return _rewrite(
        frame, title=package_name, description=lambda text: first_words(first_sentence(text), TERSE_WORDS - 1)
    )


def case_noise(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Each word of title and description in random case (lower, upper, capitalised or unchanged)."""
    return _rewrite(
        frame, title=lambda text: noisy_case(text, rng), description=lambda text: noisy_case(text, rng)
    )


def readme_top(title: str, description: str, rng: np.random.Generator) -> str:
    """``description`` as the top of a README: two to four badges, often a logo, emphasis and an emoji."""
    slug = package_name(title).replace("_", "-") or "project"
    count = int(rng.integers(2, len(README_BADGES) + 1))
    chosen = sorted(rng.choice(len(README_BADGES), size=count, replace=False))
    parts = [" ".join(README_BADGES[i].format(slug=slug) for i in chosen)]
    if rng.random() < 0.7:
        parts.append(README_LOGO.format(slug=slug))
    emoji = README_EMOJI[int(rng.integers(len(README_EMOJI)))]
    parts.append(f"**{description.strip()}** {emoji}" if description.strip() else emoji)
    return "\n\n".join(parts)


def punctuation_noise(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Punctuation dropped or doubled and extra spaces, in title and description."""
    return _rewrite(
        frame,
        title=lambda text: noisy_punctuation(text, rng),
        description=lambda text: noisy_punctuation(text, rng),
    )


def readme_markup(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """The title as a README heading, the description below its badges and logo, in bold with an emoji."""
    result = _rewrite(frame, title=lambda text: f"# {text}")
    result["description"] = [
        readme_top(title, description, rng)
        for title, description in zip(
            frame["title"].fillna("").astype(str), result["description"], strict=True
        )
    ]
    return result


#: Every transform by name, in the order reports list them.
TRANSFORMS: dict[str, Transform] = {
    "title_only": title_only,
    "description_only": description_only,
    "package_title": package_title,
    "identifier_title": identifier_title,
    "one_line": one_line,
    "cut_mid_word": cut_mid_word,
    "terse": terse,
    "case_noise": case_noise,
    "punctuation_noise": punctuation_noise,
    "readme_markup": readme_markup,
}


def describe_transforms() -> dict[str, str]:
    """Each transform's name and the first line of its docstring (what it does), for reports."""
    return {name: (fn.__doc__ or "").strip().splitlines()[0] for name, fn in TRANSFORMS.items()}


def transform_frame(frame: pd.DataFrame, name: str, seed: int) -> pd.DataFrame:
    """A transformed copy of ``frame``; rows left with neither title nor description text are dropped.

    Raises:
        TagopsError: if ``name`` is not a transform or ``frame`` lacks a ``title`` or ``description`` column.

    """
    import numpy as np

    if name not in TRANSFORMS:
        raise TagopsError(f"unknown robustness transform {name!r}; known: {', '.join(TRANSFORMS)}")
    missing = [column for column in ("title", "description") if column not in frame.columns]
    if missing:
        raise TagopsError(f"robustness transform {name!r}: the frame has no column {missing[0]!r}")
    result = TRANSFORMS[name](frame, np.random.default_rng(seed))
    has_text = result["title"].str.strip().ne("") | result["description"].str.strip().ne("")
    return result[has_text]
