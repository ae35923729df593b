"""A workload is one ordered list of stages; this module runs such a list in this process.

Each :class:`Stage` names a plain stage function, the earlier results it reads and the fixed arguments
(configs) it takes. The same list is the single definition of the workload: :func:`run_stages` runs it
in-process (``--no-pipeline``, tests, the simulation), and :mod:`tagops.pipelines` turns it into a ZenML
pipeline whose steps call the same functions. A stage function that declares a ``settings`` parameter
receives the run's :class:`~tagops.settings.Settings`; every other argument comes from the stage.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One step of a workload.

    Attributes:
        name: unique within the workload; also the ZenML step's id.
        func: the stage function.
        inputs: parameter name -> name of an earlier stage's result, or a tuple of names (a list).
        params: fixed keyword arguments (configs, flags).
        outputs: names of the results; with more than one, ``func`` returns a tuple of that length.

    """

    name: str
    func: Callable[..., Any]
    inputs: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()

    def arguments(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of this stage's call, given the results so far."""
        return {**self.params, **self.read(results)}

    def read(self, results: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments this stage takes from earlier results."""
        missing = [source for source in self.sources() if source not in results]
        if missing:
            raise KeyError(f"stage {self.name!r} reads {missing}, which no earlier stage produced")
        return {
            name: [results[s] for s in source] if isinstance(source, tuple) else results[source]
            for name, source in self.inputs.items()
        }

    def sources(self) -> list[str]:
        """The names of every earlier result this stage reads."""
        names: list[str] = []
        for source in self.inputs.values():
            names.extend(source if isinstance(source, tuple) else (source,))
        return names

    def collect(self, value: Any, results: dict[str, Any]) -> None:
        """Store what the stage returned under its output names."""
        if len(self.outputs) == 1:
            results[self.outputs[0]] = value
        elif self.outputs:
            values = tuple(value)
            if len(values) != len(self.outputs):
                raise ValueError(f"stage {self.name!r} returned {len(values)} values for {self.outputs}")
            results.update(zip(self.outputs, values, strict=True))


def wants_settings(func: Callable[..., Any]) -> bool:
    """Whether a stage function takes the run's settings."""
    return "settings" in inspect.signature(func).parameters


def call_stage(func: Callable[..., Any], settings: Settings, arguments: Mapping[str, Any]) -> Any:
    """Call a stage function with its arguments (and the settings, when it takes them)."""
    if wants_settings(func):
        return func(settings=settings, **arguments)
    return func(**arguments)


def run_stages(
    stages: Sequence[Stage], settings: Settings, *, results: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Run the stages in order in this process; returns every result by name.

    ``results`` seeds results that are known before the first stage (e.g. a data snapshot a caller
    already pulled).
    """
    known = dict(results or {})
    for index, stage in enumerate(stages, start=1):
        started = time.perf_counter()
        logger.debug("stage %d/%d: %s", index, len(stages), stage.name)
        stage.collect(call_stage(stage.func, settings, stage.arguments(known)), known)
        logger.debug("stage %s took %.1fs", stage.name, time.perf_counter() - started)
    return known


def check_plan(stages: Sequence[Stage], *, given: Sequence[str] = ()) -> None:
    """Refuse a plan whose stage names repeat or whose inputs no earlier stage (or ``given``) produces."""
    names: set[str] = set()
    produced: set[str] = set(given)
    for stage in stages:
        if stage.name in names:
            raise ValueError(f"stage name {stage.name!r} repeats")
        names.add(stage.name)
        missing = set(stage.sources()) - produced
        if missing:
            raise ValueError(f"stage {stage.name!r} reads {sorted(missing)} before any stage produces it")
        produced.update(stage.outputs)
