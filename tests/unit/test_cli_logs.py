"""The command line's logging: what reaches the console, the log file, and libraries' own handlers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tagops.cli import logs, main

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("restore_process_state", "tagops_home")]

YELLOW, RESET = "\x1b[33m", "\x1b[0m"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    tagops_level = logging.getLogger("tagops").level
    ray_logger = logging.getLogger("ray")
    ray_state = (list(ray_logger.handlers), ray_logger.propagate)
    meta_path = list(sys.meta_path)
    yield
    logging.captureWarnings(False)
    logging.getLogger("tagops").setLevel(tagops_level)
    ray_logger.handlers[:] = ray_state[0]
    ray_logger.propagate = ray_state[1]
    sys.meta_path[:] = meta_path
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logs.LogFileHandler):
            handler.close()


def record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_console_shows_tagops_progress_and_each_library_warning_once() -> None:
    console = logs.ConsoleFilter(logging.INFO)
    assert console.filter(record("tagops.workloads.train", logging.INFO, "fitted linear"))
    assert not console.filter(record("tagops.workloads.train", logging.DEBUG, "details"))
    assert console.filter(record("zenml.orchestrators.step_launcher", logging.INFO, "Step `x` has started."))
    assert not console.filter(record("alembic.runtime.migration", logging.INFO, "Running upgrade"))
    assert not console.filter(record("zenml.zen_stores.base_zen_store", logging.WARNING, "active stack"))
    warning = record("ray.data", logging.WARNING, f"{YELLOW}slow{RESET}")
    assert console.filter(warning)
    assert not console.filter(record("ray.data", logging.WARNING, "slow"))  # same text without colours
    assert console.filter(record("ray.data", logging.WARNING, "slower"))
    assert console.filter(record("ray.data", logging.ERROR, "slow"))


def test_mlflow_type_hint_advice_stays_in_the_file() -> None:
    console = logs.ConsoleFilter(logging.INFO)
    text = f"{YELLOW}Add type hints to the `predict` method to enable data validation{RESET}"
    assert not console.filter(record("py.warnings", logging.WARNING, f"/x.py:1: UserWarning: {text}\n"))


def test_console_lines_are_concise_and_plain() -> None:
    formatter = logs.ConsoleFormatter()
    line = formatter.format(record("tagops.registry.client", logging.INFO, f"{YELLOW}registered{RESET}"))
    assert line.endswith(" registered") and "\x1b" not in line and "INFO" not in line
    line = formatter.format(
        record("py.warnings", logging.WARNING, f"/x.py:3: UserWarning: {YELLOW}w{RESET}\n  src")
    )
    assert line.endswith("WARNING py.warnings: /x.py:3: UserWarning: w")


def test_a_command_writes_its_log_file_under_tagops_home(
    mirror_dir: Path,
    tagops_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "argv", ["tagops", "data", "pull", "--mirror", str(mirror_dir)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code in (0, None)
    _, err = capsys.readouterr()
    assert "verified from" in err and "\x1b" not in err
    assert "full log" not in err  # quick commands keep stderr for errors and progress
    [path] = (tagops_home / "logs").glob("tagops-*.log")
    assert logs.current_log_file() == path
    text = path.read_text(encoding="utf-8")
    assert "INFO tagops.data.ingest" in text and "verified from" in text


def test_library_handlers_are_taken_back_after_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library that installs handlers on import (as ZenML and Ray do) loses them right after."""
    (tmp_path / "noisylib.py").write_text(
        "import logging\n"
        "class ZenMLConsoleHandler(logging.StreamHandler):\n"
        "    pass\n"
        "logging.getLogger().addHandler(ZenMLConsoleHandler())\n"
        "logging.getLogger().setLevel(logging.WARNING)\n"
        "logging.getLogger('ray').addHandler(logging.StreamHandler())\n"
        "logging.getLogger('ray').propagate = False\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(logs, "_HOOKED_MODULES", ("noisylib",))
    monkeypatch.delitem(sys.modules, "noisylib", raising=False)
    logs.configure()
    import noisylib  # noqa: F401

    root = logging.getLogger()
    assert [type(h).__name__ for h in root.handlers].count("ZenMLConsoleHandler") == 0
    assert sum(isinstance(h, logs.ConsoleHandler) for h in root.handlers) == 1
    assert root.level == logging.INFO
    assert logging.getLogger("ray").handlers == [] and logging.getLogger("ray").propagate
    monkeypatch.delitem(sys.modules, "noisylib")


def test_configuring_twice_keeps_one_console_handler() -> None:
    logs.configure()
    logs.configure(verbose=True)
    root = logging.getLogger()
    assert sum(isinstance(h, logs.ConsoleHandler) for h in root.handlers) == 1
    assert logging.getLogger("tagops").level == logging.DEBUG
