"""What a command prints: its result alone on stdout, whatever libraries print while it runs."""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stdout

import pytest

from tagops.cli.output import print_json, stdout_to_stderr

pytestmark = pytest.mark.unit


def test_library_output_goes_to_stderr_at_both_levels(capfd: pytest.CaptureFixture[str]) -> None:
    with stdout_to_stderr():
        print("a table printed through Python")
        sys.stdout.flush()
        os.write(1, b"a line written to descriptor 1\n")
    print_json({"tag": "mlops"})
    out, err = capfd.readouterr()
    assert out == '{\n  "tag": "mlops"\n}\n'
    assert "a table printed through Python" in err
    assert "a line written to descriptor 1" in err


def test_a_python_level_stdout_is_held_aside_too() -> None:
    """Called from Python (a notebook, a test), ``sys.stdout`` need not be descriptor 1."""
    captured = io.StringIO()
    with redirect_stdout(captured):
        with stdout_to_stderr():
            print("library chatter")
        print_json([1])
    assert captured.getvalue() == "[\n  1\n]\n"
