"""Errors that carry enough context to fix the input: file, row, column, field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """One problem in one place of an input file.

    ``row`` is the 1-based data row (the header is not counted), ``None`` for file-level problems.
    """

    file: str
    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.message}"


class TagopsError(Exception):
    """Base class for errors the CLI reports as a clean one-line message and a non-zero exit."""


class DataError(TagopsError):
    """Input data broke its contract; ``violations`` lists every problem found, not just the first."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        first = str(self.violations[0]) if self.violations else "invalid data"
        more = len(self.violations) - 1
        super().__init__(first + (f" (and {more} more problem{'s' * (more > 1)})" if more > 0 else ""))


class ConfigFileError(TagopsError, ValueError):
    """A config file cannot be read or is not a YAML mapping (a ``ValueError``, as validation errors are)."""


class IntegrityError(TagopsError):
    """A file's content does not match the checksum the manifest promises."""


class RegistryError(TagopsError):
    """The model registry has no such model, version or alias."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none), for one-line reports."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
