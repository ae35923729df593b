"""Turning a workload's list of stages into ZenML steps: the one piece every pipeline shares.

A pipeline body calls :func:`wire` with the workload's plan and a table from stage function to the step
that runs it; configs travel as JSON parameters, earlier results as ZenML artifacts, and every step id is
the stage's name, so the pipeline run shows exactly the stages of the in-process path.
"""

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from tagops.settings import Settings, read_settings
from tagops.workloads.stages import Stage, check_plan


def run_settings() -> Settings:
    """The settings a step runs with, read from the environment.

    A step may run in another process than the CLI that started the pipeline (any orchestrator but the
    local one), so it cannot be handed the CLI's object; the environment carries the same values.
    """
    return read_settings()


def ensure_source_root() -> None:
    """Give ZenML a source root in a process where it finds none (before a pipeline runs).

    ZenML resolves step sources against the ``zenml init`` repository, else the folder of the main
    module's file. A process whose main module has no file (a notebook, ``python -c``, a test worker)
    has neither and ZenML refuses to run; tagops' steps import from the installed package, so the current
    folder serves. Where either exists, ZenML's own choice stands.
    """
    if getattr(sys.modules.get("__main__"), "__file__", None):
        return
    from zenml.client import Client
    from zenml.utils import source_utils

    if Client.find_repository() is None:
        source_utils.set_custom_source_root(str(Path.cwd()))


#: Config fields that can hold a secret (a webhook token, a database password). ZenML stores step
#: parameters with every run, so these never become parameters: the process that runs the pipeline passes
#: them to its steps in the environment variable :data:`SECRETS_ENV` (:func:`secrets_for_steps`), and
#: :func:`from_parameter` puts them back. An orchestrator that runs steps elsewhere needs that variable set
#: there, like ``TAGOPS_SERVE_DATABASE_URL``.
SECRET_FIELDS = frozenset({"webhook_url", "database_url"})
SECRETS_ENV = "TAGOPS_STEP_SECRETS"

ConfigT = TypeVar("ConfigT", bound=BaseModel)


def _secret_fields(model: BaseModel) -> dict[str, Any]:
    return {name: getattr(model, name) for name in SECRET_FIELDS & set(type(model).model_fields)}


def to_parameter(value: Any) -> Any:
    """A stage parameter as a JSON-ready step parameter (configs become dicts, without secrets)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude=set(_secret_fields(value)))
    if isinstance(value, tuple | list):
        return [to_parameter(item) for item in value]
    return value


def from_parameter(kind: type[ConfigT], parameter: Mapping[str, Any]) -> ConfigT:
    """The config a step parameter came from, its secrets taken from :data:`SECRETS_ENV`."""
    secrets = json.loads(os.environ.get(SECRETS_ENV) or "{}").get(kind.__name__, {})
    return kind.model_validate({**parameter, **secrets})


@contextmanager
def secrets_for_steps(*configs: BaseModel) -> Iterator[None]:
    """Within the block, steps find the secret fields of ``configs`` in :data:`SECRETS_ENV`."""
    secrets = {
        type(cfg).__name__: {k: v for k, v in _secret_fields(cfg).items() if v is not None} for cfg in configs
    }
    previous = os.environ.get(SECRETS_ENV)
    os.environ[SECRETS_ENV] = json.dumps({k: v for k, v in secrets.items() if v})
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(SECRETS_ENV, None)
        else:
            os.environ[SECRETS_ENV] = previous


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
