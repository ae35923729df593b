"""The warehouse's data tests, declared in ``sql/checks.yaml`` beside the SQL that builds the tables.

Each kind of test compiles to one query that selects the rows breaking it: :func:`check_table` runs a
table's tests right after the table is built, and if any selects a row it raises :class:`CheckError`,
which names the table, the test, the column and up to :data:`EXAMPLES` failing rows (their row in the
source file, their id and value). The build stops there, so nothing downstream of a bad table is built.

Kinds (:mod:`tagops.warehouse.kinds`; all take ``column``, the column a failure is reported under, except
``same_row_count``):

- ``not_null``, ``not_blank`` (empty or only whitespace), ``integer`` (a non-negative integer of at most
  18 digits, as text), ``timestamp`` (ISO 8601 text, with or without an offset);
- ``unique`` (``key``: an SQL expression compared instead of the column), ``accepted_values``
  (``values``), ``relationships`` (every value appears in ``to``.``field``);
- ``same_row_count`` (``to``: two files that align by position), ``equal_rows`` (``to``, matched by the
  column ``by``, compared on ``columns``), ``disjoint`` (no ``key`` value, by default the column, also
  in ``to``: leakage; ``allow`` lists pairs of ids reviewed and accepted, each with its reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from tagops.errors import DataError, TagopsError, Violation
from tagops.warehouse.kinds import KINDS, DataTest

if TYPE_CHECKING:
    import duckdb

#: Failing rows shown per failed test (the count of all of them is given too).
EXAMPLES = 5
#: Characters of a value shown in a message.
SHOWN_CHARS = 60
CHECKS_FILE = "sql/checks.yaml"


@dataclass(frozen=True)
class TableChecks:
    """The tests of one table, and where its rows come from (named in every failure)."""

    table: str
    source: str
    tests: tuple[DataTest, ...]


@dataclass(frozen=True)
class FailingRow:
    """One row that breaks a test, as the test's query selected it."""

    source_row: int | None
    id: str | None
    column: str | None
    value: str | None
    other: str | None
    detail: str | None


@dataclass(frozen=True)
class CheckFailure:
    """A failed test: how many rows break it and the first few."""

    table: str
    source: str
    test: DataTest
    count: int
    examples: tuple[FailingRow, ...]

    def violations(self) -> list[Violation]:
        """One violation per example row, and one for the rows not shown."""
        where = f"table {self.table} ({self.source})"
        headline = f"{self.test.kind}: {self.test.problem}"
        found = []
        for example in self.examples:
            parts = [f"id {example.id}"] if example.id is not None else []
            if example.value is not None:
                parts.append(f"value {_shorten(example.value)!r}")
            if example.other is not None:
                parts.append(f"{self.test.other_label} {_shorten(example.other)!r}")
            if example.detail:
                parts.append(example.detail)
            message = headline + (f" ({'; '.join(parts)})" if parts else "")
            found.append(Violation(where, message, row=example.source_row, column=example.column or None))
        if self.count > len(self.examples):
            more = self.count - len(self.examples)
            found.append(
                Violation(where, f"{headline}: {more} more row{'s' * (more > 1)}", column=self.test.column)
            )
        return found


def _shorten(value: str) -> str:
    return value if len(value) <= SHOWN_CHARS else value[: SHOWN_CHARS - 3] + "..."


class CheckError(DataError):
    """A table failed its data tests: nothing downstream of it was built and no snapshot was written."""

    def __init__(self, table: str, failures: Sequence[CheckFailure]) -> None:
        self.table = table
        self.failures = list(failures)
        tests = len(self.failures)
        headline = Violation(
            f"table {table}",
            f"{tests} data test{'s' * (tests > 1)} failed; nothing downstream of it was built and no "
            "snapshot was written",
        )
        super().__init__([headline, *(v for failure in self.failures for v in failure.violations())])

    def __str__(self) -> str:
        return "\n".join(str(violation) for violation in self.violations)


def parse_checks(raw: Any, *, file: str = CHECKS_FILE) -> dict[str, TableChecks]:
    """The tests by table from a checks file's content, or a :class:`DataError` naming each bad entry."""
    problems: list[Violation] = []
    tables = raw.get("tables") if isinstance(raw, Mapping) else None
    if not isinstance(tables, Mapping):
        raise DataError([Violation(file, "expected a mapping with a 'tables' mapping")])
    parsed: dict[str, TableChecks] = {}
    for table, spec in tables.items():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("source"), str):
            problems.append(Violation(file, f"tables.{table}: expected 'source' (text) and 'tests' (a list)"))
            continue
        tests: list[DataTest] = []
        for position, item in enumerate(spec.get("tests") or []):
            where = f"tables.{table}.tests[{position}]"
            if not isinstance(item, Mapping) or len(item) != 1:
                problems.append(Violation(file, f"{where}: expected one test kind and its parameters"))
                continue
            ((kind, params),) = item.items()
            if kind not in KINDS:
                problems.append(
                    Violation(file, f"{where}: unknown test kind {kind!r} (kinds: {sorted(KINDS)})")
                )
                continue
            try:
                tests.append(KINDS[kind].model_validate(params or {}))
            except ValidationError as error:
                for problem in error.errors():
                    field = ".".join(str(p) for p in problem["loc"])
                    problems.append(Violation(file, f"{where}.{kind}.{field}: {problem['msg']}"))
        parsed[str(table)] = TableChecks(str(table), spec["source"], tuple(tests))
    if problems:
        raise DataError(problems)
    return parsed


def checks_text() -> str:
    """The checks file shipped in the package, as text."""
    return resources.files("tagops.warehouse").joinpath(CHECKS_FILE).read_text(encoding="utf-8")


@cache
def load_checks() -> dict[str, TableChecks]:
    """The tests by table, from the checks file shipped in the package."""
    return parse_checks(yaml.safe_load(checks_text()))


def table_columns(connection: duckdb.DuckDBPyConnection, table: str) -> frozenset[str]:
    """The columns of ``table`` (empty when there is no such table)."""
    rows = connection.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
    ).fetchall()
    return frozenset(str(row[0]) for row in rows)


def run_test(
    connection: duckdb.DuckDBPyConnection, checks: TableChecks, test: DataTest
) -> CheckFailure | None:
    """Run one test of ``checks.table``; ``None`` when no row breaks it."""
    import duckdb

    query = test.failing_rows(checks.table, table_columns(connection, checks.table))
    ordered = (
        f"SELECT *, count(*) OVER () AS _count FROM ({query}) AS _failing "
        f"ORDER BY source_row NULLS LAST, TRY_CAST(id AS BIGINT) NULLS LAST, id LIMIT {EXAMPLES}"
    )
    try:
        rows = connection.execute(ordered).fetchall()
    except duckdb.Error as error:
        raise TagopsError(f"table {checks.table}: its {test.kind} test cannot run ({error})") from error
    if not rows:
        return None
    examples = tuple(FailingRow(*row[:6]) for row in rows)
    return CheckFailure(checks.table, checks.source, test, int(rows[0][6]), examples)


def check_table(connection: duckdb.DuckDBPyConnection, checks: TableChecks) -> None:
    """Run every test of a table; raise :class:`CheckError` listing each one that failed."""
    failures = [f for test in checks.tests if (f := run_test(connection, checks, test)) is not None]
    if failures:
        raise CheckError(checks.table, failures)
