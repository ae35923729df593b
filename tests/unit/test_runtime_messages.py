"""Ray's relayed messages (raylet warnings) go to stderr, so a command's stdout stays its result."""

from __future__ import annotations

import pytest

from tagops.runtime import send_ray_messages_to_stderr

pytestmark = pytest.mark.unit


def test_raylet_messages_are_printed_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    from ray._private import worker

    before = worker.print_to_stdstream  # may already be wrapped by a Ray session earlier in this process
    original = getattr(before, "__wrapped__", before)
    worker.print_to_stdstream = original
    try:
        send_ray_messages_to_stderr()
        send_ray_messages_to_stderr()  # idempotent: wrapped once
        message = {"lines": ["WARNING: 4 PYTHON worker processes have been started"], "pid": "raylet"}
        worker.print_to_stdstream({**message, "is_err": False}, ignore_prefix=False)
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "4 PYTHON worker processes" in captured.err
        assert worker.print_to_stdstream.__wrapped__ is original  # type: ignore[attr-defined]  # not wrapped twice
    finally:
        worker.print_to_stdstream = before
