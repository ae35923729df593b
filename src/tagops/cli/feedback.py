"""`tagops feedback review|accept|reject`: the review queue of labels from untrusted keys."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tagops.cli.context import load_settings, read_config
from tagops.cli.output import command_group, print_json

if TYPE_CHECKING:
    from tagops.predlog.log import PredictionLog

feedback_app = command_group(
    "Review labels from client keys: they enter training only once accepted (labeller and admin keys "
    "are trusted)."
)
_CONFIG = typer.Option(help="Serving config YAML whose database holds the feedback.")
_REVIEWER = typer.Option(help="Who decides (default: the OS user).")
_NOTE = typer.Option(help="Why, kept with the decision.")


@contextmanager
def _log(config: Path | None) -> Iterator[PredictionLog]:
    from tagops.config import ServeConfig
    from tagops.predlog.log import PredictionLog

    with PredictionLog.from_config(read_config(ServeConfig, config), load_settings(), journal=False) as log:
        log.create_tables()
        yield log


@feedback_app.command("review")
def review(
    limit: Annotated[int, typer.Option(min=1, help="Texts to show.")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the queue as JSON (with feedback ids).")
    ] = False,
    config: Annotated[Path | None, _CONFIG] = None,
) -> None:
    """The texts whose labels wait for review, with the label guide's rule for each proposed tag."""
    from rich.console import Console
    from rich.table import Table

    from tagops.data.labels import load_label_guide
    from tagops.workloads.feedback_review import pending_by_key, review_queue

    with _log(config) as log:
        labelled = log.reader.read_labelled()  # once, for both views
        items = review_queue(log.reader, labelled=labelled)
        per_key = pending_by_key(log.reader, labelled=labelled)
    if as_json:
        print_json(
            {
                "waiting": sum(entry["waiting"] for entry in per_key.values()),
                "per_key": per_key,
                "texts": [i.as_dict() for i in items[:limit]],
            }
        )
        return
    console = Console()
    if not items:
        console.print("nothing waits for review")
        return
    guide = load_label_guide()
    table = Table(
        title=f"review queue: {sum(e['waiting'] for e in per_key.values())} labels on {len(items)} texts "
        f"(showing {min(limit, len(items))})"
    )
    for column in ("text", "model", "trusted", "proposed (labels, keys)"):
        table.add_column(column, overflow="fold")
    in_play: set[str] = set()
    for item in items[:limit]:
        text = f"[b]{item.title}[/b] {item.description}"[:300]
        proposed = "\n".join(
            f"{tag}: {len(ids)} from {', '.join(item.proposed_by[tag][:3])}"
            + (" …" if len(item.proposed_by[tag]) > 3 else "")
            for tag, ids in sorted(item.proposals.items(), key=lambda kv: -len(kv[1]))
        )
        trusted = "tie" if item.tied else (item.trusted_tag or "")
        table.add_row(text, item.model_tag, trusted, proposed)
        in_play |= {*item.proposals, item.model_tag, *([item.trusted_tag] if item.trusted_tag else [])}
    console.print(table)
    console.print("[b]label guide[/b] (docs/label-guide.md)")
    for tag in sorted(in_play & set(guide.tags)):
        rule = guide.tags[tag]
        console.print(f"  [b]{tag}[/b]: {rule.summary} Includes: {'; '.join(rule.includes)}.")
        for exclusion in rule.excludes:
            console.print(f"    not {exclusion.phrase} → {exclusion.goes_to}")
    console.print(f"  tie rule: {guide.tie_rule}")
    waiting = ", ".join(
        f"{e['name']} ({key_id or 'no key'}): {e['waiting']}" for key_id, e in per_key.items()
    )
    console.print(f"waiting per key: {waiting}")
    console.print(
        "decide with `tagops feedback accept|reject ID...` (ids: `--json`) or `--key KEY_ID` for all of a key"
    )


def _decide(
    decision: str,
    ids: list[str],
    key: str | None,
    reviewer: str | None,
    note: str | None,
    config: Path | None,
) -> None:
    from tagops.workloads.feedback_review import decide, decide_key

    if bool(ids) == bool(key):
        raise typer.BadParameter("name feedback ids or --key" + (", not both" if ids else ""))
    with _log(config) as log:
        if key:
            count = decide_key(log.engine, log.reader, key, decision, reviewer=reviewer, note=note)  # type: ignore[arg-type]
        else:
            count = decide(log.engine, ids, decision, reviewer=reviewer, note=note)  # type: ignore[arg-type]
    print_json({"decision": decision, "feedback": count})


@feedback_app.command("accept")
def accept(
    ids: Annotated[list[str] | None, typer.Argument(help="Feedback ids.")] = None,
    key: Annotated[str | None, typer.Option(help="Every waiting label of this key id.")] = None,
    reviewer: Annotated[str | None, _REVIEWER] = None,
    note: Annotated[str | None, _NOTE] = None,
    config: Annotated[Path | None, _CONFIG] = None,
) -> None:
    """Let these labels enter training (below trusted keys' votes on the same text)."""
    _decide("accepted", ids or [], key, reviewer, note, config)


@feedback_app.command("reject")
def reject(
    ids: Annotated[list[str] | None, typer.Argument(help="Feedback ids.")] = None,
    key: Annotated[str | None, typer.Option(help="Every waiting label of this key id.")] = None,
    reviewer: Annotated[str | None, _REVIEWER] = None,
    note: Annotated[str | None, _NOTE] = None,
    config: Annotated[Path | None, _CONFIG] = None,
) -> None:
    """Keep these labels out of training (they stay in the log)."""
    _decide("rejected", ids or [], key, reviewer, note, config)
