"""Turning a workload's list of stages into ZenML steps: the one piece every pipeline shares.

A pipeline body calls :func:`wire` with the workload's plan and a table from stage function to the step
that runs it; configs travel as JSON parameters, earlier results as ZenML artifacts, and every step id is
the stage's name, so the pipeline run shows exactly the stages of the in-process path.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from tagops.settings import Settings
from tagops.workloads.stages import Stage, check_plan


def run_settings() -> Settings:
    """The settings a step runs with, read from the environment.

    A step may run in another process than the CLI that started the pipeline (any orchestrator but the
    local one), so it cannot be handed the CLI's object; the environment carries the same values.
    """
    return Settings()


def to_parameter(value: Any) -> Any:
    """A stage parameter as a JSON-ready step parameter (configs become dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [to_parameter(item) for item in value]
    return value


def wire(stages: Sequence[Stage], steps: Mapping[str, Any]) -> dict[str, Any]:
    """Call, inside a ZenML pipeline body, the step of each stage in order; returns the output artifacts."""
    check_plan(stages)
    artifacts: dict[str, Any] = {}
    for stage in stages:
        step = steps[stage.func.__name__]
        parameters = {name: to_parameter(value) for name, value in stage.params.items()}
        outputs = step(**parameters, **stage.read(artifacts), id=stage.name)
        stage.collect(outputs, artifacts)
    return artifacts
