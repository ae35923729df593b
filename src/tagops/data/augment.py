"""Training-data augmentation toward the short, terse text projects are described with in the wild.

The training data describes each project with a sentence-case title and a paragraph; text in the wild is
often a package name and one line, a title alone, or a summary cut off mid-word (``docs/label-guide.md``).
Recipe ``short`` adds, for a seeded ``fraction`` of the training rows, one copy of the row rewritten into
one such short form (chosen per row from :data:`SHORT_FORMS`, with the transforms of
:mod:`tagops.data.robustness`), labelled as the original.
:func:`label_guide_statements` gives the label guide's own statements as labelled texts (each tag's
summary, every phrase it includes, every phrase it excludes under the tag it goes to), which the linear
family learns from as a prior (``LinearParams.label_guide``). :func:`with_other_topics` adds the `other`
posts written for topics the data never shows to the rows every family trains on
(``AugmentConfig.other_topics``); :func:`with_other_topics_texts` gives them to one family alone
(``LinearParams.other_topics``, ``TransformerParams.other_topics``).
Only training rows are augmented: validation, the holdout and every evaluation see the text as it was
written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from tagops.config import AugmentConfig

#: The short forms a copy takes (names of :data:`tagops.data.robustness.TRANSFORMS`).
SHORT_FORMS = ("title_only", "one_line", "terse", "cut_mid_word")
RECIPES = ("none", "short")


def augment_frame(frame: pd.DataFrame, recipe: str, *, fraction: float, seed: int) -> pd.DataFrame:
    """``frame`` followed by its augmented copies (``recipe="none"``: ``frame`` itself)."""
    import numpy as np
    import pandas as pd

    from tagops.data.robustness import transform_frame

    if recipe not in RECIPES:
        raise ValueError(f"unknown augmentation recipe {recipe!r}; expected one of {list(RECIPES)}")
    if recipe == "none" or fraction <= 0 or frame.empty:
        return frame
    chosen = frame.sample(frac=min(fraction, 1.0), random_state=seed)
    forms = np.random.default_rng(seed).integers(len(SHORT_FORMS), size=len(chosen))
    copies = [
        transform_frame(chosen[forms == k], form, seed + k)
        for k, form in enumerate(SHORT_FORMS)
        if (forms == k).any()
    ]
    return pd.concat([frame, *copies], ignore_index=True)


def label_guide_statements() -> tuple[list[str], list[str]]:
    """The label guide as labelled texts: each tag's summary, includes, and excludes under their tag."""
    from tagops.data.labels import load_label_guide

    texts: list[str] = []
    tags: list[str] = []
    for tag, rule in load_label_guide().tags.items():
        for text, target in [
            (rule.summary, tag),
            *((phrase, tag) for phrase in rule.includes),
            *((exclusion.phrase, exclusion.goes_to) for exclusion in rule.excludes),
        ]:
            texts.append(text)
            tags.append(target)
    return texts, tags


def other_topics_texts() -> list[str]:
    """The written `other` rows as model inputs (title and description joined), all tagged `other`."""
    from tagops.data.clean import build_text
    from tagops.data.labels import load_other_topics

    written = load_other_topics()
    return [build_text(t, d) for t, d in zip(written["title"], written["description"], strict=True)]


def with_other_topics_texts(texts: Sequence[str], labels: Sequence[str]) -> tuple[list[str], list[str]]:
    """``texts`` and ``labels`` followed by the written `other` rows that are not among ``texts`` already.

    A model family that learns from the rows on its own (``other_topics`` of its params) calls this on
    the rows it is given: those ``augmentation.other_topics`` already added are not counted twice.
    """
    given = set(texts)
    written = [text for text in other_topics_texts() if text not in given]
    return [*texts, *written], [*labels, *(["other"] * len(written))]


def with_other_topics(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` followed by the written `other` rows (``tagops.data.labels.load_other_topics``).

    They bring a title, a description and the tag; ids follow ``frame``'s largest, of the same type, so
    no id is shared; an ``origin`` column (the warehouse's training set) says ``other_topics``; any other
    column of ``frame`` is left missing for them (``NaT`` for a date), so its type stays as it was.
    """
    import pandas as pd

    from tagops.data.labels import load_other_topics

    written = load_other_topics()
    rows = written[["title", "description", "tag"]].copy()
    if "id" in frame.columns:
        ids = pd.to_numeric(frame["id"], errors="coerce")
        first = int(ids.max()) + 1 if ids.notna().any() else 1
        new_ids = pd.Series(range(first, first + len(rows)))
        rows.insert(0, "id", new_ids if pd.api.types.is_numeric_dtype(frame["id"]) else new_ids.astype(str))
    if "origin" in frame.columns:
        rows["origin"] = "other_topics"
    return pd.concat([frame, rows[[c for c in frame.columns if c in rows.columns]]], ignore_index=True)


def augment_rows(frame: pd.DataFrame, augmentation: AugmentConfig, *, seed: int) -> pd.DataFrame:
    """``frame`` as models fit on it under ``augmentation``.

    The written `other` rows are added when asked, then short-form copies are made of a share of all.
    """
    if augmentation.other_topics:
        frame = with_other_topics(frame)
    return augment_frame(frame, augmentation.recipe, fraction=augmentation.fraction, seed=seed)


def augment_stage(
    train: pd.DataFrame, dataset: pd.DataFrame, augmentation: AugmentConfig, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows models fit on: the training split and (for the refit) all of dataset.csv, augmented."""
    return augment_rows(train, augmentation, seed=seed), augment_rows(dataset, augmentation, seed=seed)
