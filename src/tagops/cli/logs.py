"""Logging for every command: concise progress on the console, everything in a file under TAGOPS_HOME.

The console (stderr) shows ``tagops.*`` records at INFO (DEBUG with ``--verbose``), the progress lines of
ZenML (steps started, finished or cached) and of the HTTP server, and each distinct WARNING or worse of any
other library once. Colour codes that libraries put into their messages are stripped, so a redirected
console holds plain text. The log file (``TAGOPS_HOME/logs/tagops-<time>-<pid>.log``) gets every record of
every library at INFO and above (DEBUG with ``--verbose``), warnings included.

ZenML and Ray attach their own handlers when they are imported (ZenML a console handler on the root
logger, which also resets the root level; Ray a handler on the ``ray`` logger that does not propagate).
An import hook hands both back to these handlers right after their import, whichever command imports them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

#: Colour and cursor codes (CSI sequences) some libraries embed in their messages.
ANSI_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

#: Loggers whose INFO records are progress a user wants to see on the console.
PROGRESS_LOGGERS = (
    "tagops",
    "zenml.orchestrators.step_launcher",  # "Step `train_linear` has started." / "... has finished in 3s."
    "zenml.orchestrators.step_run_utils",  # "Using cached version of step `pull`."
    "uvicorn",  # the server's start-up lines and, when enabled, its access log
)

#: Third-party loggers whose warnings are routine and stay in the log file only.
FILE_ONLY_LOGGERS = (
    "zenml",  # e.g. "Setting the global active stack to default." on a fresh home
)

#: Warnings that are known and intentional; they stay in the log file only.
IGNORED_MESSAGES = (
    # MLflow suggests type hints on the pyfunc's predict at every load; hints would make it coerce our
    # DataFrame input, so the advice does not apply. (MLflow wraps the check in its own
    # ``simplefilter("once")``, which overrides a ``warnings.filterwarnings`` set by the application.)
    re.compile(r"Add type hints to the `predict` method"),
)

#: Log files kept in ``TAGOPS_HOME/logs``; older ones are removed when a command starts a new one.
KEEP_LOG_FILES = 50

#: Libraries that would configure logging on their own if asked (read when they are imported).
LIBRARY_ENVIRONMENT = {
    "MLFLOW_CONFIGURE_LOGGING": "false",  # no handler of MLflow's own on the "mlflow" logger
    "ZENML_LOGGING_COLORS_DISABLED": "true",
}

_HOOKED_MODULES = ("zenml", "ray", "ray.data")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour codes."""
    return ANSI_CODES.sub("", text)


def _is_under(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


class ConsoleFilter(logging.Filter):
    """Decides what reaches the console: progress, ``tagops`` records, other libraries' warnings once."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self._seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is shown on the console."""
        if _is_under(record.name, ("tagops",)):
            return record.levelno >= self.level
        if _is_under(record.name, PROGRESS_LOGGERS) and record.levelno >= logging.INFO:
            return True
        if record.levelno < logging.WARNING:
            return False
        if record.levelno < logging.ERROR and _is_under(record.name, FILE_ONLY_LOGGERS):
            return False
        message = strip_ansi(record.getMessage())
        if any(pattern.search(message) for pattern in IGNORED_MESSAGES):
            return False
        key = (record.name, record.levelno, message)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class PlainFormatter(logging.Formatter):
    """A formatter whose output carries no colour codes."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, colour codes removed."""
        return strip_ansi(super().format(record))


class ConsoleFormatter(PlainFormatter):
    """``12:03:04 message`` for tagops' own INFO lines; level and logger name for everything else."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        self._short = PlainFormatter("%(asctime)s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """The record in the concise form for tagops progress, else with level and logger name."""
        if record.levelno == logging.INFO and _is_under(record.name, PROGRESS_LOGGERS):
            return self._short.format(record)
        if record.name == "py.warnings":  # the warning's text, without the source line Python appends
            record = logging.makeLogRecord({**record.__dict__, "msg": record.getMessage().splitlines()[0]})
            record.args = None
        return super().format(record)


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: the stream is always the current ``sys.stderr``."""


class LogFileHandler(logging.FileHandler):
    """The command's log file (a class of its own so a second configuration replaces it)."""


def configure(*, verbose: bool = False) -> None:
    """Install the console handler and route warnings and library loggers to it; writes no file.

    Called once per command before anything runs; calling it again replaces what it installed.
    """
    for key, value in LIBRARY_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, ConsoleHandler):
            root.removeHandler(handler)
    console = ConsoleHandler()
    console.addFilter(ConsoleFilter(level))
    console.setFormatter(ConsoleFormatter())
    root.addHandler(console)
    root.setLevel(level)
    logging.getLogger("tagops").setLevel(level)
    logging.captureWarnings(True)
    _install_import_hook()
    for name in _HOOKED_MODULES:
        if name in sys.modules:
            adopt_library_logging()
            break


def use_json_format() -> None:
    """Write the console's records as JSON lines, with the request id while one is served.

    For a server whose stderr a log collector reads (``tagops serve --log-format json``); the same records
    reach the console as in text, and the log file keeps its text lines.
    """
    from tagops.serving.logs import json_handler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, ConsoleHandler):
            json_handler(handler)


def start_log_file(home: Path) -> Path:
    """Start this command's log file under ``home/logs`` (replacing an earlier one) and return its path."""
    folder = home / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"tagops-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, LogFileHandler):
            root.removeHandler(handler)
            handler.close()
    handler = LogFileHandler(path, encoding="utf-8", delay=False)
    # Libraries that log DEBUG on loggers of their own (Ray Data) would otherwise fill the file.
    handler.setLevel(logging.getLogger("tagops").level or logging.INFO)
    handler.setFormatter(PlainFormatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    _prune(folder, keep=path)
    return path


def current_log_file() -> Path | None:
    """The log file the current command writes, if it started one."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LogFileHandler):
            return Path(handler.baseFilename)
    return None


def _prune(folder: Path, *, keep: Path) -> None:
    files = sorted(folder.glob("tagops-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[KEEP_LOG_FILES:]:
        if old != keep:
            old.unlink(missing_ok=True)


def adopt_library_logging() -> None:
    """Take logging back from libraries that configured their own on import (ZenML, Ray, Ray Data).

    Removes ZenML's console handler from the root logger (it would print every record again, in colour,
    on stdout), restores the root level ZenML reset, and lets the ``ray`` and ``ray.data`` loggers
    propagate to these handlers instead of printing with their own. ZenML's step-log handler stays: it
    stores step logs with the run.
    """
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, ConsoleHandler)]
    if not ours:
        return  # logging is not configured by the CLI in this process
    for handler in list(root.handlers):
        if type(handler).__name__ == "ZenMLConsoleHandler":
            root.removeHandler(handler)
    root.setLevel(logging.getLogger("tagops").level)
    ray_logger = logging.getLogger("ray")
    for handler in list(ray_logger.handlers):
        ray_logger.removeHandler(handler)
    ray_logger.propagate = True
    data_logger = logging.getLogger("ray.data")  # keeps its file in Ray's session folder
    for handler in list(data_logger.handlers):
        if type(handler).__name__ == "PlainRayHandler":
            data_logger.removeHandler(handler)
    data_logger.propagate = True


class _AdoptAfterImport(importlib.abc.MetaPathFinder):
    """Runs :func:`adopt_library_logging` right after ZenML or Ray has been imported."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """Defer to the other finders, wrapping the loader of the hooked top-level modules."""
        if fullname not in _HOOKED_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                loader = spec.loader
                if loader is not None and hasattr(loader, "exec_module"):
                    spec.loader = _AdoptingLoader(loader)
                return spec
        return None


class _AdoptingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__.loader = self._loader  # type: ignore[union-attr]
        module.__loader__ = self._loader
        self._loader.exec_module(module)
        adopt_library_logging()


def _install_import_hook() -> None:
    if not any(isinstance(finder, _AdoptAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AdoptAfterImport())
