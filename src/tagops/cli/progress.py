"""Progress bars for long commands, on stderr, only where a person watches it.

A workload reports progress through a plain callback, ``on_progress(done, total)``, and knows nothing of
the terminal; :class:`CommandProgress` turns each callback into a Rich bar. Bars are drawn only when
stderr is a terminal and the command prints no ``--json``: CI logs, pipes and scripts get no progress
noise, only the log lines they always had. While the bars are drawn, log lines and what libraries print
scroll above them; the bars vanish when the command ends, before its result is printed.

Pipeline steps are followed from the log records that announce them (ZenML's "Step `name` has
finished", and the in-process runner's ``stage i/n`` debug records), since the pipeline runs the same
stages either way and takes no callback of its own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

#: A workload's progress callback: how many units are done, out of how many.
OnProgress = Callable[[int, int], None]

#: The loggers that announce pipeline steps: ZenML's step launcher and the in-process stage runner.
STEP_LOGGERS = (
    "zenml.orchestrators.step_launcher",
    "zenml.orchestrators.step_run_utils",
    "tagops.workloads.stages",
)
_STEP_STARTED = re.compile(r"^Step `(?P<name>[^`]+)` has started")
_STEP_ENDED = re.compile(r"^(Step `(?P<a>[^`]+)` has finished|Using cached version of step `(?P<b>[^`]+)`)")


def wanted(*, json_output: bool = False) -> bool:
    """Whether to draw bars: stderr is a terminal (not dumb) and the result is not printed as JSON."""
    if json_output or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class CommandProgress:
    """The bars of one command, on a Rich ``Progress`` on stderr (a context manager).

    Disabled, every method returns ``None`` or does nothing, so the command passes its workloads no
    callback at all. ``console`` is for tests: a Rich console of their own.
    """

    def __init__(self, *, enabled: bool, console: Any = None) -> None:
        self.enabled = enabled
        self._console = console
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._done: dict[str, int] = {}

    def __enter__(self) -> CommandProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console or Console(stderr=True),
                transient=True,  # gone before the result is printed
                redirect_stdout=False,  # stdout carries the result alone, never a line of the display
                redirect_stderr=True,  # log lines scroll above the bars
            )
            self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def counter(self, description: str) -> OnProgress | None:
        """A callback that draws a bar ``description`` (``None`` when disabled).

        The bar appears at the first call; a count lower than the last one (a second training run, a
        refit) starts it again.
        """
        if not self.enabled:
            return None

        def update(done: int, total: int) -> None:
            progress = self._progress
            if progress is None:
                return
            task = self._tasks.get(description)
            if task is None:
                task = self._tasks[description] = progress.add_task(description, total=total)
            elif done < self._done[description]:
                progress.reset(task, total=total)  # also restarts its clock and time remaining
            self._done[description] = done
            progress.update(task, completed=done, total=total)

        return update

    @contextlib.contextmanager
    def epochs(self) -> Iterator[None]:
        """Within the block, a bar follows every transformer trained in this process, epoch by epoch."""
        from tagops.models.transformer.progress import epoch_listener

        with epoch_listener(self.counter("epochs")):
            yield

    @contextlib.contextmanager
    def steps(self, total: int | None = None) -> Iterator[None]:
        """Within the block, a bar follows the pipeline's steps (``total``: their number, when known).

        Runs on ZenML and in process alike: the bar advances on each step that finishes or is cached, and
        names the step running. Without ``total`` (and in process, where the runner announces it) the
        bar counts steps.
        """
        if not self.enabled:
            yield
            return
        watcher = StepWatcher(self, total)
        loggers = [logging.getLogger(name) for name in STEP_LOGGERS]
        stages = logging.getLogger("tagops.workloads.stages")
        level = stages.level
        if not stages.isEnabledFor(logging.DEBUG):
            # Its `stage i/n` records are DEBUG: created for the watcher, below every console and file level.
            stages.setLevel(logging.DEBUG)
        for each in loggers:
            each.addHandler(watcher)
        try:
            yield
        finally:
            for each in loggers:
                each.removeHandler(watcher)
            stages.setLevel(level)

    def show(self, name: str, *, description: str, done: int, total: int | None) -> None:
        """Set the bar ``name`` to ``done`` of ``total`` with ``description`` (``None`` total: count only)."""
        progress = self._progress
        if progress is None:
            return
        task = self._tasks.get(name)
        if task is None:
            task = self._tasks[name] = progress.add_task(description, total=total)
        progress.update(task, description=description, completed=done, total=total)


class StepWatcher(logging.Handler):
    """Moves a :class:`CommandProgress` bar on the records that announce pipeline steps."""

    def __init__(self, progress: CommandProgress, total: int | None) -> None:
        super().__init__(logging.DEBUG)
        self.progress = progress
        self.total = total
        self.done = 0
        self.running = ""

    def emit(self, record: logging.LogRecord) -> None:
        """Advance on a finished or cached step; name the step that starts."""
        try:
            if record.name == "tagops.workloads.stages":
                self._from_runner(record)
            else:
                self._from_zenml(record.getMessage())
        except Exception:  # a progress bar never fails the command
            self.handleError(record)

    def _from_runner(self, record: logging.LogRecord) -> None:
        args: tuple[Any, ...] = record.args if isinstance(record.args, tuple) else ()
        if str(record.msg).startswith("stage %d/%d") and len(args) == 3:
            index, total, name = args
            self.total = int(total)
            self._draw(done=int(index) - 1, running=str(name))
        elif str(record.msg).startswith("stage %s took"):
            self._draw(done=self.done + 1, running="")

    def _from_zenml(self, message: str) -> None:
        started = _STEP_STARTED.match(message)
        if started:
            self._draw(done=self.done, running=started["name"])
            return
        ended = _STEP_ENDED.match(message)
        if ended:
            self._draw(done=self.done + 1, running="")

    def _draw(self, *, done: int, running: str) -> None:
        self.done, self.running = done, running
        description = f"steps: {running}" if running else "steps"
        self.progress.show("steps", description=description, done=done, total=self.total)
