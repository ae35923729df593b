"""The review queue: labels from untrusted keys wait here until a person accepts or rejects them.

``tagops feedback review`` lists the queue one text at a time: the text, what the model answered, each
proposed tag with the keys behind it, what trusted keys already said about the text, and the label
guide's rule for every tag in play. ``tagops feedback accept|reject`` records a decision per label, or
for every waiting label of one key (a key caught sending wrong labels is rejected in one step). Texts
whose trusted votes tie are listed too: a person breaks the tie by adding a trusted label.
Decisions are rows of their own (``feedback_reviews``); a later decision replaces an earlier one and
no feedback row is ever deleted.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import delete, select

from tagops.data.clean import match_key
from tagops.errors import TagopsError
from tagops.predlog.feedback import resolve_votes, standing
from tagops.predlog.schema import feedback, feedback_reviews, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from tagops.predlog.reader import LogReader

Decision = Literal["accepted", "rejected"]


class ReviewError(TagopsError):
    """A review named feedback that does not exist or a decision that cannot be made."""


@dataclass
class QueueItem:
    """One text in the review queue and every label that waits on it."""

    title: str
    description: str
    #: What the model answered on the latest labelled prediction of this text.
    model_tag: str
    #: Proposed tag → the feedback ids that propose it (waiting for review).
    proposals: dict[str, list[str]] = field(default_factory=dict)
    #: Proposed tag → the names of the keys that propose it.
    proposed_by: dict[str, list[str]] = field(default_factory=dict)
    #: What trusted and accepted votes decided for this text (``None``: nothing yet, or a tie).
    trusted_tag: str | None = None
    #: Trusted votes that tie: training leaves the text out until someone breaks the tie.
    tied: bool = False
    latest_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "title": self.title,
            "description": self.description,
            "model_tag": self.model_tag,
            "proposals": self.proposals,
            "proposed_by": self.proposed_by,
            "trusted_tag": self.trusted_tag,
            "tied": self.tied,
            "latest_at": self.latest_at,
        }


def review_queue(
    reader: LogReader, *, limit: int | None = None, labelled: list[dict[str, Any]] | None = None
) -> list[QueueItem]:
    """Texts with labels waiting for review, or with tied trusted votes; the most proposed first.

    ``labelled``: the reader's :meth:`~tagops.predlog.reader.LogReader.read_labelled` rows, if already read.
    """
    rows = reader.read_labelled() if labelled is None else labelled
    by_text: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_text.setdefault(match_key(str(row["title"]), str(row["description"])), []).append(row)
    items = []
    for text_rows in by_text.values():
        waiting = [r for r in text_rows if standing(r)[0] == "pending_review"]
        winners, counts = resolve_votes(text_rows)
        tied = counts.get("unresolved", 0) > 0
        if not waiting and not tied:
            continue
        latest = max(text_rows, key=lambda r: r["feedback_at"])
        item = QueueItem(
            title=str(latest["title"]),
            description=str(latest["description"]),
            model_tag=str(latest["tag"]),
            trusted_tag=str(winners[0]["feedback_tag"]) if winners else None,
            tied=tied,
            latest_at=latest["feedback_at"].isoformat(),
        )
        for row in waiting:
            tag = str(row["feedback_tag"])
            item.proposals.setdefault(tag, []).append(str(row["feedback_id"]))
            name = str(row.get("key_name") or row.get("key_id") or "unkeyed")
            if name not in item.proposed_by.setdefault(tag, []):
                item.proposed_by[tag].append(name)
        items.append(item)
    items.sort(key=lambda i: (-sum(len(v) for v in i.proposals.values()) - i.tied, i.latest_at))
    return items[:limit] if limit is not None else items


def pending_by_key(
    reader: LogReader, *, labelled: list[dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    """Labels waiting for review per key id (``""`` for unkeyed rows): the key's name and the count."""
    found: dict[str, dict[str, Any]] = {}
    for row in reader.read_labelled() if labelled is None else labelled:
        if standing(row)[0] == "pending_review":
            key_id = str(row.get("key_id") or "")
            entry = found.setdefault(key_id, {"name": row.get("key_name") or "unkeyed", "waiting": 0})
            entry["waiting"] += 1
    return found


def decide(
    engine: Engine,
    feedback_ids: list[str],
    decision: Decision,
    *,
    reviewer: str | None = None,
    note: str | None = None,
) -> int:
    """Record ``decision`` for these feedback rows (replacing an earlier one); returns how many.

    Raises:
        ReviewError: an id names no feedback row (nothing is recorded then).

    """
    if decision not in ("accepted", "rejected"):
        raise ReviewError(f"decision must be 'accepted' or 'rejected', got {decision!r}")
    ids = sorted(set(feedback_ids))
    if not ids:
        raise ReviewError("name at least one feedback id (see `tagops feedback review --json`)")
    reviewer = reviewer or getpass.getuser()
    with engine.begin() as connection:
        known: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            known |= {
                str(i) for (i,) in connection.execute(select(feedback.c.id).where(feedback.c.id.in_(chunk)))
            }
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ReviewError(f"no feedback with id {', '.join(unknown[:5])} (see `tagops feedback review`)")
        now = utcnow()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            connection.execute(delete(feedback_reviews).where(feedback_reviews.c.feedback_id.in_(chunk)))
            connection.execute(
                feedback_reviews.insert(),
                [
                    {
                        "feedback_id": i,
                        "decision": decision,
                        "reviewer": reviewer,
                        "reviewed_at": now,
                        "note": note,
                    }
                    for i in chunk
                ],
            )
    return len(ids)


def decide_key(
    engine: Engine,
    reader: LogReader,
    key_id: str,
    decision: Decision,
    *,
    reviewer: str | None = None,
    note: str | None = None,
) -> int:
    """Record ``decision`` for every label of ``key_id`` that waits for review; returns how many."""
    ids = [
        str(r["feedback_id"])
        for r in reader.read_labelled()
        if str(r.get("key_id") or "") == key_id and standing(r)[0] == "pending_review"
    ]
    if not ids:
        raise ReviewError(f"no feedback from key {key_id!r} waits for review")
    return decide(engine, ids, decision, reviewer=reviewer, note=note)
