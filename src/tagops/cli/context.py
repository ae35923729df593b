"""What every command shares: the settings, read once from the environment and prepared."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tagops.cli import logs

if TYPE_CHECKING:
    from tagops.config.base import FrozenModel

Config = TypeVar("Config", bound="FrozenModel")

logger = logging.getLogger("tagops.cli")


def load_settings(*, announce_log: bool = False) -> Any:
    """The settings from the environment, with state folders, library environment and log file prepared.

    Args:
        announce_log: Say on the console where the log file is (for commands that run for a while;
            quick commands keep their stderr to errors only).

    """
    from tagops.settings import prepare_environment, read_settings

    settings = read_settings()
    prepare_environment(settings)
    path = logs.start_log_file(settings.home)
    if announce_log:
        logger.info("full log: %s", path)
    return settings


def read_config(kind: type[Config], path: Path | None, **overrides: Any) -> Config:
    """``load_config`` for a command: a config that cannot be read or is invalid is a usage error.

    The error names the file (or the command line, for a field an option set) and each bad field with
    its dotted place in the file and what was wrong with it, one per line, instead of pydantic's report
    (which ends each error with a documentation link); the exit status is 2, as for any invalid value.
    """
    import typer
    from pydantic import ValidationError

    from tagops.config.base import config_mapping

    try:
        raw, section = config_mapping(kind, path, **overrides)
    except ValueError as error:  # unreadable, not YAML, not a mapping: the message names the file
        raise typer.BadParameter(str(error), param_hint="'--config'") from error
    try:
        return kind.model_validate(raw)
    except ValidationError as error:
        where = str(path) if path is not None else "the defaults"
        if section is not None:
            where = f"{where}, section '{section}'"
        given = frozenset(key for key, value in overrides.items() if value is not None)
        raise typer.BadParameter(describe_invalid(error, where, raw, given=given)) from error


def describe_invalid(error: Any, where: str, raw: Any, *, given: frozenset[str] = frozenset()) -> str:
    """One line per invalid field of a pydantic ``ValidationError``: ``WHERE, field 'a.b': message``.

    The field is named as it is written in ``raw`` (the file's mapping): pydantic's location also holds
    the tag of a tagged union (``model.linear.C`` for ``model: {family: linear, C: ...}``), which is
    not in the file and is left out. A field in ``given`` came from a command-line option, and is
    said to.
    """
    lines = []
    for problem in error.errors(include_url=False):
        parts = _as_written(problem["loc"], raw)
        place = ".".join(parts) or "(top level)"
        source = "the command line" if parts and parts[0] in given else where
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown field (a typo?)"
        elif problem["type"] == "value_error":  # a validator's own words, without pydantic's "Value error, "
            message = str(problem["ctx"]["error"])
        lines.append(f"{source}, field '{place}': {message}")
    return "\n".join(lines)


def _as_written(location: tuple[Any, ...], raw: Any) -> list[str]:
    """The parts of a pydantic error location that are keys or indexes of ``raw``, and the last part."""
    parts, node = [], raw
    for index, part in enumerate(location):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif index < len(location) - 1:
            continue  # a union's tag, which the file does not write
        parts.append(str(part))
    return parts
