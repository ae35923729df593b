"""What the commands print: JSON results on stdout, and stdout held aside while libraries print."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

import typer


def print_json(data: Any) -> None:
    """Print a command's result as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


@contextlib.contextmanager
def stdout_to_stderr() -> Any:
    """Point fd 1 at stderr while ZenML runs: it echoes step logs to stdout, which carries our JSON."""
    import os

    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
