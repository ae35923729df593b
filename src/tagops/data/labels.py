"""What the four tags mean, as data, and the challenge set labelled by those rules.

``label_guide.json`` is the machine-readable form of ``docs/label-guide.md``: for each tag a one-sentence
summary, what it includes, what it excludes and which tag those go to, plus the tie rule. Models may use
:func:`label_descriptions` as a text prior; annotators and feedback reviewers read the page.

``challenge/challenge.csv`` is a set of short, terse project summaries written in the style of package
indexes and README first lines, labelled by the guide (see ``challenge/README.md``). It is for evaluation
only: nothing trains or tunes on it. ``other_topics/other_topics.csv`` is the opposite: posts written for
the topics the label guide puts under `other` and dataset.csv never shows, for training when a config
asks (``AugmentConfig.other_topics``; ``other_topics/README.md``). Their loaders live here rather than in
modules named after the data folders beside them, so that no module shares its name with a folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from tagops import LABELS
from tagops.data.ingest import read_csv
from tagops.errors import DataError, Violation

if TYPE_CHECKING:
    import pandas as pd

DATA_DIR = Path(__file__).resolve().parent
LABEL_GUIDE_PATH = DATA_DIR / "label_guide.json"
CHALLENGE_PATH = DATA_DIR / "challenge" / "challenge.csv"
OTHER_TOPICS_PATH = DATA_DIR / "other_topics" / "other_topics.csv"

#: Columns of the challenge set, in file order.
CHALLENGE_COLUMNS: tuple[str, ...] = ("id", "title", "description", "tag", "style")

#: Columns of the written `other` rows, in file order.
OTHER_TOPICS_COLUMNS: tuple[str, ...] = ("id", "title", "description", "tag", "topic")

#: How a challenge row's text was written (``challenge/README.md`` describes each).
STYLES: tuple[str, ...] = ("package_summary", "readme_line", "truncated", "name_only", "long")

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Exclusion(_Frozen):
    """Something that looks like the tag but is labelled with another one."""

    phrase: Text
    goes_to: str

    @field_validator("goes_to")
    @classmethod
    def _known_tag(cls, value: str) -> str:
        if value not in LABELS:
            raise ValueError(f"{value!r} is not one of the tags {list(LABELS)}")
        return value


class TagRule(_Frozen):
    """The rule for one tag."""

    #: One sentence: what a project with this tag is about.
    summary: Text
    #: Short phrases naming the subjects the tag covers.
    includes: tuple[Text, ...] = Field(min_length=1)
    #: Look-alikes that belong to another tag.
    excludes: tuple[Exclusion, ...] = ()


class LabelGuide(_Frozen):
    """The labelling rules: one :class:`TagRule` per tag, in :data:`tagops.LABELS` order, and the tie rule."""

    tags: dict[str, TagRule]
    #: How to decide when a project is about a topic and about operating models.
    tie_rule: Text

    @field_validator("tags")
    @classmethod
    def _exactly_the_labels(cls, value: dict[str, TagRule]) -> dict[str, TagRule]:
        missing = [tag for tag in LABELS if tag not in value]
        unknown = [tag for tag in value if tag not in LABELS]
        if missing or unknown:
            raise ValueError(
                f"the tags must be exactly {list(LABELS)} (missing {missing}, unknown {unknown})"
            )
        for tag, rule in value.items():
            for position, exclusion in enumerate(rule.excludes):
                if exclusion.goes_to == tag:
                    raise ValueError(f"exclusion {tag}.excludes[{position}] goes to its own tag {tag!r}")
        return {tag: value[tag] for tag in LABELS}


def _field_name(location: tuple[int | str, ...]) -> str:
    """``('tags', 'mlops', 'excludes', 0, 'goes_to')`` -> ``tags.mlops.excludes[0].goes_to``."""
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else part)
    return name


def load_label_guide(path: Path | None = None) -> LabelGuide:
    """Load and validate the label guide (the one shipped in the package unless ``path`` is given).

    Raises:
        DataError: the file is missing, is not JSON, or breaks the guide's shape; each problem names the
            file and the field (for example ``tags.mlops.excludes[0].goes_to``).

    """
    path = path or LABEL_GUIDE_PATH
    name = str(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise DataError([Violation(name, "file not found")]) from error
    except (OSError, UnicodeDecodeError) as error:
        raise DataError([Violation(name, f"cannot read the label guide: {error}")]) from error
    except json.JSONDecodeError as error:
        raise DataError(
            [Violation(name, f"not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})")]
        ) from error
    try:
        return LabelGuide.model_validate(raw)
    except ValidationError as error:
        violations = []
        for problem in error.errors():
            field = _field_name(tuple(problem["loc"])) or "(top level)"
            message = str(problem["msg"]).removeprefix("Value error, ")
            violations.append(Violation(name, f"field '{field}': {message}"))
        raise DataError(violations) from error


def label_descriptions(guide: LabelGuide | None = None) -> dict[str, str]:
    """One descriptive text per tag (summary and includes), in :data:`tagops.LABELS` order.

    Meant as a text prior for models, e.g. label embeddings for zero-shot scoring.
    """
    guide = guide or load_label_guide()
    return {
        tag: f"{rule.summary} It includes: {'; '.join(rule.includes)}." for tag, rule in guide.tags.items()
    }


#: A file's own check of one row: (file name, row number, the row's values) -> its problems.
RowCheck = Callable[[str, int, dict[str, str]], list[Violation]]


def _row_violations(name: str, frame: pd.DataFrame, check: RowCheck) -> list[Violation]:
    """Every problem in the rows of a file of written rows (numbered from 1, the header not counted).

    Ids and titles must be unique and tags among the labels; ``check`` adds what it finds in each row.
    """
    violations: list[Violation] = []
    first_row_of_id: dict[str, int] = {}
    first_row_of_title: dict[str, int] = {}
    for row, record in enumerate(frame.to_dict("records"), start=1):
        values = {str(column): str(value) for column, value in record.items()}
        ident, title, tag = values["id"], values["title"], values["tag"]
        if not re.fullmatch(r"\d{1,18}", ident):
            violations.append(
                Violation(name, f"id must be a non-negative integer (value {ident!r})", row, "id")
            )
        elif ident in first_row_of_id:
            violations.append(
                Violation(name, f"duplicate id {ident} (first on row {first_row_of_id[ident]})", row, "id")
            )
        else:
            first_row_of_id[ident] = row
        key = title.strip().casefold()
        if not key:
            violations.append(Violation(name, "title is empty", row, "title"))
        elif key in first_row_of_title:
            violations.append(
                Violation(
                    name, f"duplicate title {title!r} (first on row {first_row_of_title[key]})", row, "title"
                )
            )
        else:
            first_row_of_title[key] = row
        if tag not in LABELS:
            violations.append(
                Violation(name, f"tag is not one of the labels {list(LABELS)} (value {tag!r})", row, "tag")
            )
        violations += check(name, row, values)
    return violations


def _load_rows(path: Path, columns: tuple[str, ...], check: RowCheck) -> pd.DataFrame:
    """A file of written rows with exactly ``columns``, every row checked; ``id`` as int64."""
    name = str(path)
    frame = read_csv(path)
    missing = [column for column in columns if column not in frame.columns]
    unexpected = [column for column in frame.columns if column not in columns]
    if missing or unexpected:
        raise DataError(
            [Violation(name, f"columns must be {list(columns)} (missing {missing}, unexpected {unexpected})")]
        )
    ordered: pd.DataFrame = frame[list(columns)]
    if violations := _row_violations(name, ordered, check):
        raise DataError(violations)
    return ordered.astype({"id": "int64"}).reset_index(drop=True)


def _challenge_row(name: str, row: int, values: dict[str, str]) -> list[Violation]:
    style, description = values["style"], values["description"]
    if style not in STYLES:
        return [Violation(name, f"style is not one of {list(STYLES)} (value {style!r})", row, "style")]
    if (style == "name_only") != (not description.strip()):
        expected = "empty" if style == "name_only" else "non-empty"
        return [Violation(name, f"style {style!r} needs an {expected} description", row, "description")]
    return []


def _other_topics_row(name: str, row: int, values: dict[str, str]) -> list[Violation]:
    violations = []
    if values["tag"] != "other":
        violations.append(Violation(name, f"tag must be 'other' (value {values['tag']!r})", row, "tag"))
    if not values["description"].strip():
        violations.append(Violation(name, "description is empty", row, "description"))
    if not values["topic"].strip():
        violations.append(Violation(name, "topic is empty", row, "topic"))
    return violations


def load_challenge(path: Path | None = None) -> pd.DataFrame:
    """Load and validate the challenge set (the one shipped in the package unless ``path`` is given).

    Returns a frame with columns ``id`` (int64), ``title``, ``description`` (``""`` when empty), ``tag``
    and ``style``.

    Raises:
        DataError: every problem found, each naming the file, the row and the column.

    """
    path = path or CHALLENGE_PATH
    return _load_rows(path, CHALLENGE_COLUMNS, _challenge_row)


def load_other_topics(path: Path | None = None) -> pd.DataFrame:
    """Load and validate the written `other` rows (the ones shipped in the package unless ``path`` is given).

    Returns a frame with columns ``id`` (int64), ``title``, ``description``, ``tag`` (always ``other``)
    and ``topic`` (the label guide's topic the row was written for).

    Raises:
        DataError: every problem found, each naming the file, the row and the column.

    """
    path = path or OTHER_TOPICS_PATH
    return _load_rows(path, OTHER_TOPICS_COLUMNS, _other_topics_row)
