"""Auditing labels: the rows of a labelled file whose tag the data itself argues against.

``tagops data audit`` scores every row with a model that never saw it: the file is cut into stratified
folds, a model of the chosen family (the linear model unless told) is fitted on the other folds and
predicts the held-out one. Confident learning (Northcutt, Jiang and Chuang, 2021, as the ``cleanlab``
library implements it) then counts, per pair of given and likely true tag, the rows whose out-of-fold
probability of another tag reaches that tag's own average confidence, calibrates the counts to the
class sizes, and flags as many rows of each off-diagonal pair as that estimate says are mislabelled,
the least likely given tags first. Taking the library rather than writing the thresholds here keeps the
method as published and maintained.

A few percent of wrong tags is enough to bound what any model scores against the file (every such row
is an error in cross-validation however good the model), and the label guide decides each disputed
row. The audit changes nothing: it lists the rows, most suspect first, with the likeliest other tag,
for a person to check against ``docs/label-guide.md``; corrections enter through the data (corrected
copies of dataset.csv and tags.csv, then ``tagops data build --source-dir``; ``tagops data diff`` shows
them as relabelled rows).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops import LABELS
from tagops.errors import DataError, Violation

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tagops.config import AnyModelParams

logger = logging.getLogger(__name__)

#: Folds the audit cuts unless told: every row is scored by a model fitted on four fifths of the others.
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class Suspect:
    """One listed row: confident learning counts its tag as wrong, or the out-of-fold model disagrees."""

    #: The 1-based data row of the audited file (the header not counted), and the row's id.
    row: int
    id: int
    title: str
    description: str
    tag: str
    #: The likeliest other tag by the out-of-fold model, and the model's probabilities of it and of the
    #: given tag.
    suggested: str
    p_suggested: float
    p_given: float
    #: Confident learning counts the tag as wrong; ``False``: listed only because the out-of-fold model's
    #: top tag differs (``disagreements=True``).
    confident: bool = True


@dataclass(frozen=True)
class LabelAudit:
    """What :func:`audit_labels` found, with how it was measured."""

    file: str
    family: str
    folds: int
    seed: int
    rows: int
    #: Weighted F1 of the out-of-fold predictions against the given tags.
    out_of_fold_f1: float
    #: Confident learning's estimate of the share of rows whose given tag is wrong.
    estimated_noise: float
    #: ``given -> likely true -> rows`` estimated by confident learning (off-diagonal pairs only).
    estimated_flips: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Whether rows the out-of-fold model merely disagrees with are listed too.
    disagreements: bool = False
    #: Flagged rows, the least likely given tag first.
    suspects: list[Suspect] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


def out_of_fold_proba(
    texts: Sequence[str], tags: Sequence[str], params: AnyModelParams, *, folds: int, seed: int
) -> np.ndarray:
    """Each row's probabilities from a model fitted on the other folds (columns in :data:`LABELS` order)."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from tagops.models.base import create_model

    tag_array = np.asarray(tags)
    proba = np.zeros((len(texts), len(LABELS)), dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train, held_out) in enumerate(splitter.split(np.zeros(len(tags)), tag_array)):
        model: Any = create_model(params)
        model.fit([texts[i] for i in train], tag_array[train].tolist(), seed=seed + fold)
        columns = [list(model.labels).index(label) for label in LABELS]
        proba[held_out] = model.predict_proba([texts[i] for i in held_out])[:, columns]
        logger.info("audit: fold %d/%d scored (%d rows)", fold + 1, folds, len(held_out))
    return proba


def check_auditable(frame: pd.DataFrame, *, file: str, folds: int) -> None:
    """Every tag needs a row in each fold, so at least ``folds`` rows.

    Raises:
        DataError: naming each tag with fewer rows, and how many it has.
        ValueError: if ``folds`` is below 2.

    """
    if folds < 2:
        raise ValueError(f"the audit needs at least 2 folds, got {folds}")
    counts = frame["tag"].value_counts()
    short = [(tag, int(counts.get(tag, 0))) for tag in LABELS if 0 < counts.get(tag, 0) < folds]
    if short:
        raise DataError(
            [
                Violation(
                    file, f"tag {tag!r} has {n} row(s); {folds} folds need at least {folds}", column="tag"
                )
                for tag, n in short
            ]
        )
    if counts.size < 2:
        raise DataError([Violation(file, "the audit needs rows of at least two tags", column="tag")])


def audit_labels(
    frame: pd.DataFrame,
    params: AnyModelParams,
    *,
    file: str,
    folds: int = DEFAULT_FOLDS,
    seed: int = 1234,
    disagreements: bool = False,
) -> LabelAudit:
    """Flag the rows of a validated, labelled ``frame`` whose tag is likely wrong (module docstring: how).

    Confident learning flags a row only where the model is at least as sure of another tag as it is on
    average of that tag's own rows: few false alarms, but a wrong tag the model is only fairly sure of
    goes unflagged. ``disagreements`` also lists every row whose out-of-fold top tag differs from its
    tag (``confident`` false), for a review that can afford to read more rows.

    Raises:
        DataError: if a tag has fewer rows than there are folds.

    """
    import numpy as np
    from cleanlab.count import estimate_joint
    from cleanlab.filter import find_label_issues
    from sklearn.metrics import f1_score

    from tagops.data.clean import build_text

    check_auditable(frame, file=file, folds=folds)
    frame = frame.reset_index(drop=True)
    texts = [build_text(t, d) for t, d in zip(frame["title"], frame["description"], strict=True)]
    given = np.array([LABELS.index(t) for t in frame["tag"]])
    proba = out_of_fold_proba(texts, frame["tag"].tolist(), params, folds=folds, seed=seed)
    present = np.unique(given)  # cleanlab counts the classes it is given: audit only the tags present
    local = np.searchsorted(present, given)
    sub = proba[:, present] / proba[:, present].sum(axis=1, keepdims=True)
    # n_jobs=1: cleanlab otherwise forks a process pool, and a fork of a process that already runs
    # threads (torch's, a server's) can hang in the child; the search itself takes milliseconds.
    flagged = find_label_issues(
        local,
        sub,
        filter_by="prune_by_noise_rate",
        return_indices_ranked_by="self_confidence",
        n_jobs=1,
    )
    joint = estimate_joint(local, sub) * len(frame)
    flips = {
        LABELS[present[i]]: {
            LABELS[present[j]]: round(float(joint[i, j]))
            for j in range(len(present))
            if i != j and round(joint[i, j]) > 0
        }
        for i in range(len(present))
    }
    predicted = proba.argmax(axis=1)
    others = proba.copy()
    others[np.arange(len(given)), given] = -1.0
    likeliest_other = others.argmax(axis=1)
    confident = {int(i) for i in flagged}
    listed = [int(i) for i in flagged]
    if disagreements:
        listed += [int(i) for i in np.flatnonzero(predicted != given) if int(i) not in confident]
    listed.sort(key=lambda i: proba[i, given[i]])  # the least likely given tag first
    suspects = [
        Suspect(
            row=int(i) + 1,
            id=int(frame["id"].iloc[i]),
            title=str(frame["title"].iloc[i]),
            description=str(frame["description"].iloc[i]),
            tag=LABELS[given[i]],
            suggested=LABELS[likeliest_other[i]],
            p_suggested=round(float(proba[i, likeliest_other[i]]), 4),
            p_given=round(float(proba[i, given[i]]), 4),
            confident=i in confident,
        )
        for i in listed
    ]
    return LabelAudit(
        file=file,
        family=params.family,
        folds=folds,
        seed=seed,
        rows=len(frame),
        disagreements=disagreements,
        out_of_fold_f1=round(float(f1_score(given, predicted, average="weighted")), 4),
        estimated_noise=round(float(1.0 - np.trace(joint) / len(frame)), 4),
        estimated_flips={k: v for k, v in flips.items() if v},
        suspects=suspects,
    )


def write_suspects(audit: LabelAudit, path: Path) -> Path:
    """Write the suspect rows as CSV for a reviewer (one row per suspect); returns the path."""
    import pandas as pd

    columns = [f.name for f in fields(Suspect)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([asdict(s) for s in audit.suspects], columns=columns).to_csv(path, index=False)
    return path
