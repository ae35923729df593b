"""The exit statuses of `tagops`: one table, which the commands raise and the CLI reference renders.

A script or a CI job branches on these, so a code keeps its meaning across commands: 3 and above are
outcomes a command reports on purpose (an alarm, a refusal, no decision yet), never failures to run.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a `tagops` command's exit status means (:data:`MEANINGS` says when each is used)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    ALARM = 3
    REFUSED = 4
    UNDECIDED = 5
    INTERRUPTED = 130


#: When each status is used: the CLI reference renders this table.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "The command did what it was asked; `gate`: the challenger passed; `rollout check --wait`: "
    "the canary was promoted.",
    ExitCode.ERROR: "An error (`error:` lines on stderr): bad data, a missing model, an unreachable "
    "server; a failed Ray job (`submit`) or loop turn (`loop run`); Ctrl-C.",
    ExitCode.USAGE: "A usage error: an unknown option, a missing or invalid value (a number that is "
    "not finite or out of the option's range included), a config file a command cannot use.",
    ExitCode.ALARM: "`monitor --fail-on-alarm`: the window alarmed (drift or performance).",
    ExitCode.REFUSED: "`gate`: the gate refused the challenger; `rollout check --wait`: the canary was "
    "aborted.",
    ExitCode.UNDECIDED: "`rollout check --wait`: still undecided when the wait ended; the rollout goes on.",
    ExitCode.INTERRUPTED: "`submit`: stopped following the job (Ctrl-C); it keeps running on the cluster.",
}


def summary() -> str:
    """The table in one line, for `tagops --help`: ``0 ok, 1 error, 2 usage, ...``."""
    return ", ".join(f"{code.value} {code.name.lower()}" for code in ExitCode)
