"""Values the commands take (numbers, seeds, times): refused as the command line is read, naming the option.

A value a command cannot use is a usage error (exit status 2) before any work, whichever command takes
it. Click's own float ranges let ``nan`` through (a NaN fails no ``<`` test), and a range with no upper
end lets ``inf`` through; both would then fail far from the command line, or not at all (``--threshold
nan`` would abstain on nothing and say nothing). :func:`number` reads every float option of the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import typer


def number(
    low: float | None = None, high: float | None = None, *, above: bool = False
) -> Callable[[str], float]:
    """A parser for a float option: a finite number from ``low`` to ``high`` (above ``low`` with ``above``).

    Used as ``typer.Option(parser=number(0.0, 1.0))``; a value outside is a usage error (exit status 2)
    such as ``Invalid value for '--threshold': 1.5 is not from 0 to 1``.
    """
    if low is None and high is None:
        wanted = "a finite number"
    elif high is None:
        wanted = f"{'above' if above else 'at least'} {low:g}"
    elif low is None:
        wanted = f"at most {high:g}"
    else:
        wanted = f"{'above' if above else 'from'} {low:g} {'and at most' if above else 'to'} {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise typer.BadParameter(f"{text!r} is not a finite number")
        too_low = low is not None and (value <= low if above else value < low)
        if too_low or (high is not None and value > high):
            raise typer.BadParameter(f"{text} is not {wanted}")
        return value

    return parse


#: ``--threshold``: abstain to ``other`` below this confidence; a confidence lies from 0 to 1.
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        parser=number(0.0, 1.0),
        metavar="<float>",
        help="Abstain to 'other' below this confidence, from 0 to 1 (default: the model's own; 0: never).",
    ),
]


def seed(value: int) -> int:
    """``--seed``'s callback: NumPy and scikit-learn take from 0 to ``SEED_MAX`` (``tagops.config.base``)."""
    from tagops.config.base import SEED_MAX  # pydantic and YAML: not imported by `--help`

    if not 0 <= value <= SEED_MAX:
        raise typer.BadParameter(f"{value} is not from 0 to {SEED_MAX}")
    return value


#: ``--seed`` for a command that seeds NumPy or scikit-learn itself (a config's seed is checked there).
SeedOption = Annotated[int, typer.Option(callback=seed, help="Seeds the folds and the models.")]


def iso_time(text: str) -> datetime:
    """A parser for a time option: ISO 8601, taken as UTC without a zone (what the prediction log stores)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-26T10:00:00Z)") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


#: ``--since`` and ``--until``: the window of the prediction log a command reads.
SinceOption = Annotated[
    datetime | None,
    typer.Option(
        parser=iso_time,
        metavar="<time>",
        help="Window start, ISO 8601 (UTC if no zone; default: until - window).",
    ),
]
UntilOption = Annotated[
    datetime | None,
    typer.Option(parser=iso_time, metavar="<time>", help="Window end, ISO 8601 (default: now)."),
]
