"""Feedback from the prediction log as training rows: trusted, one vote per key, resolved, split by time.

A label enters training only if someone trusted stands behind it:

1. **Trust.** A label from a ``labeller`` or ``admin`` key is trusted; one from a ``client`` key (or from
   a key the database does not know) waits in the review queue (``tagops feedback review``) until a person
   accepts it. Rejected labels and every label of a revoked key are left out, so revoking a key takes its
   labels out of the next training data.
2. **One vote per key and text.** Texts are compared by :func:`~tagops.data.clean.match_key` (case,
   punctuation and spacing do not make a new text); a key's latest label for a text is its vote, and its
   earlier ones are superseded. A thousand labels from one key are one vote.
3. **Conflicts resolve by trust, then agreement.** For each text the votes of the highest trust present
   decide (``admin`` over ``labeller`` over a reviewed ``client`` label); among those the tag with the most
   keys wins. A tie is left out of training (``unresolved``) and shown in the review queue; nothing is
   deleted.

Then a text whose title is already in dataset.csv or holdout.csv is dropped (no duplicates, no leakage
into the holdout); the rest must pass the data contract (:func:`tagops.data.validate.validate_frame`), row
by row. The newest ``recent_fraction`` of the rows is the recent labelled window, held out of training,
so the recent-window gate is measured on trusted labels only.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.data.clean import match_key
from tagops.errors import DataError, TagopsError
from tagops.predlog.schema import ROLES, TRUSTED_ROLES

if TYPE_CHECKING:
    import pandas as pd

    from tagops.data.stages import DataSnapshot

logger = logging.getLogger(__name__)

FEEDBACK_FILE = "feedback"
#: The weight of a reviewed (accepted) label from a key that is not trusted: below every trusted role.
_REVIEWED_RANK = -1


# -------------------------------------------------------------------------------- feedback → rows
@dataclass
class FeedbackRows:
    """Validated feedback as projects rows: what joins training and the held-out recent window."""

    train: pd.DataFrame
    recent: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def _text_key(title: str, description: str) -> str:
    return match_key(title, description)


def standing(row: dict[str, Any]) -> tuple[str, int | None]:
    """Where a labelled row stands, and its rank among votes (``None``: it cannot vote).

    The state is ``trusted``, ``accepted``, ``pending_review``, ``rejected`` or ``revoked_key``.
    """
    if row.get("key_revoked_at") is not None:
        return "revoked_key", None
    review = row.get("review")
    if review == "rejected":
        return "rejected", None
    role = row.get("key_role")
    if role in TRUSTED_ROLES:
        return "trusted", ROLES.index(role)
    if review == "accepted":
        return "accepted", _REVIEWED_RANK
    return "pending_review", None


def resolve_votes(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Trusted votes → one labelled row per text that has a winner, and counts of what did not count.

    ``rows`` are :meth:`~tagops.predlog.reader.LogReader.read_labelled` rows. Each returned row is the
    latest of the winning votes (its text and time), with ``votes`` and ``voters`` added.
    """
    counts = Counter({"revoked_key": 0, "rejected": 0, "pending_review": 0})
    ranked: list[tuple[int, dict[str, Any]]] = []
    for row in rows:
        state, rank = standing(row)
        if rank is None:
            counts[state] += 1
        else:
            ranked.append((rank, row))
    latest: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
    for rank, row in ranked:
        vote_key = (str(row.get("key_id") or ""), _text_key(str(row["title"]), str(row["description"])))
        held = latest.get(vote_key)
        if held is None or (row["feedback_at"], str(row["feedback_id"])) > (
            held[1]["feedback_at"],
            str(held[1]["feedback_id"]),
        ):
            latest[vote_key] = (rank, row)
    counts["superseded"] = len(ranked) - len(latest)
    by_text: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for (_, text), vote in latest.items():
        by_text.setdefault(text, []).append(vote)
    winners: list[dict[str, Any]] = []
    counts["outvoted"] = counts["agreeing"] = counts["unresolved"] = 0
    for votes in by_text.values():
        top = max(rank for rank, _ in votes)
        tally = Counter(str(row["feedback_tag"]) for rank, row in votes if rank == top).most_common()
        if len(tally) > 1 and tally[0][1] == tally[1][1]:
            counts["unresolved"] += len(votes)
            continue
        tag = tally[0][0]
        agreeing = [row for _, row in votes if str(row["feedback_tag"]) == tag]
        counts["outvoted"] += len(votes) - len(agreeing)
        counts["agreeing"] += len(agreeing) - 1
        chosen = max(agreeing, key=lambda r: (r["feedback_at"], str(r["feedback_id"])))
        winners.append({**chosen, "votes": len(agreeing), "voters": len(votes)})
    return winners, dict(counts)


def feedback_to_rows(
    labelled: list[dict[str, Any]],
    dataset: pd.DataFrame,
    holdout: pd.DataFrame,
    *,
    recent_fraction: float,
) -> FeedbackRows:
    """Turn feedback joined with its predictions into contract-valid rows, split by time.

    ``labelled`` rows are :meth:`~tagops.predlog.reader.LogReader.read_labelled` rows. Counts of every
    row left out, and why, are returned with the rows.
    """
    import pandas as pd

    from tagops.data.validate import validate_frame

    unique, resolved = resolve_votes(labelled)
    counts = {"feedback": len(labelled), **resolved}
    known_titles = {match_key(str(t), "") for t in [*dataset["title"], *holdout["title"]]}
    known_texts = {
        _text_key(str(t), str(d))
        for frame in (dataset, holdout)
        for t, d in zip(frame["title"], frame["description"], strict=True)
    }
    fresh = [
        r
        for r in unique
        if match_key(str(r["title"]), "") not in known_titles
        and _text_key(str(r["title"]), str(r["description"])) not in known_texts
    ]
    counts["known_titles"] = len(unique) - len(fresh)
    fresh.sort(key=lambda r: (r["feedback_at"], str(r["prediction_id"])))
    next_id = int(max([*dataset["id"].tolist(), *holdout["id"].tolist(), 0])) + 1
    frame = pd.DataFrame(
        {
            "id": [str(next_id + i) for i in range(len(fresh))],
            "created_on": [r["feedback_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") for r in fresh],
            "title": [str(r["title"]) for r in fresh],
            "description": [str(r["description"]) for r in fresh],
            "tag": [str(r["feedback_tag"]) for r in fresh],
        },
        dtype=object,
    )
    frame = frame.astype(str) if len(frame) else frame
    before = len(frame)
    valid = _valid_rows(frame, validate_frame)
    counts["invalid"] = before - len(valid)
    recent_rows = math.ceil(len(valid) * recent_fraction) if len(valid) >= 2 else 0
    train = valid.iloc[: len(valid) - recent_rows].reset_index(drop=True)
    recent = valid.iloc[len(valid) - recent_rows :].reset_index(drop=True)
    counts["train"], counts["recent"] = len(train), len(recent)
    return FeedbackRows(train, recent, counts)


def _valid_rows(frame: pd.DataFrame, validate_frame: Any) -> pd.DataFrame:
    """The rows of ``frame`` that pass the contract (typed), dropping each row a violation names."""
    import pandas as pd

    from tagops.data.ingest import EXPECTED_COLUMNS

    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in EXPECTED_COLUMNS})
    for _ in range(3):  # dropping a row cannot create a new violation; the loop is a safety net
        if frame.empty:
            return empty
        try:
            return validate_frame(frame, file=FEEDBACK_FILE)  # type: ignore[no-any-return]
        except DataError as error:
            bad = {v.row - 1 for v in error.violations if v.row is not None}
            if not bad:  # a file-level problem: nothing row-wise to drop
                raise
            for violation in error.violations[:5]:
                logger.info("feedback row dropped: %s", violation)
            frame = frame.drop(index=[i for i in bad if i in frame.index]).reset_index(drop=True)
    raise TagopsError("feedback rows keep failing the data contract; see the log")


def write_training_data(
    dataset: pd.DataFrame, rows: pd.DataFrame, holdout_path: Path, output_dir: Path
) -> DataSnapshot:
    """dataset.csv + feedback rows as one projects file (the holdout is left as it is), hashed."""
    import pandas as pd

    from tagops.data.stages import snapshot

    output_dir.mkdir(parents=True, exist_ok=True)
    combined = pd.concat([dataset, rows], ignore_index=True)
    combined["created_on"] = pd.to_datetime(combined["created_on"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    path = output_dir / "dataset.csv"
    combined.to_csv(path, index=False)
    return snapshot(path, holdout_path)
