"""What the commands print: plain help, JSON results on stdout, stdout held aside while libraries print."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path  # at run time: typer reads the callbacks' signatures
from typing import Annotated, Any

import typer

#: ``--json``: the result as one JSON document on stdout, for scripts (people get a table or a line).
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")]


def command_group(help_text: str, **options: Any) -> typer.Typer:
    """A group of commands whose help and usage errors are plain text (Rich still draws the tables).

    Typer draws help with Rich when it is installed; importing Rich's help renderers (Markdown, panels,
    tracebacks) would be most of the time `tagops --help` takes.
    """
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None, **options)


def output_file(path: Path | None) -> Path | None:
    """``--output FILE``'s callback: a path that cannot take the file is refused before the run."""
    from tagops.outputs import check_output_file

    if path is not None:
        check_output_file(path)
    return path


def output_folder(path: Path | None) -> Path | None:
    """``--output FOLDER``'s callback: a path that cannot take the outputs is refused before the run."""
    from tagops.outputs import check_output_folder

    if path is not None:
        check_output_folder(path)
    return path


def print_json(data: Any) -> None:
    """Print a command's result as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


@contextlib.contextmanager
def stdout_to_stderr() -> Any:
    """Send to stderr what libraries print on stdout while they run: stdout carries our JSON alone.

    Both levels are moved: file descriptor 1 (ZenML echoes step logs, Ray's C++ core writes there) and
    ``sys.stdout`` (Ray Tune prints its tables through Python), which need not be descriptor 1 where the
    command is called from Python (a notebook, a test).
    """
    import os

    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
