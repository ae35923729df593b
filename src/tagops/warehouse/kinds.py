"""The kinds of data test the warehouse's ``sql/checks.yaml`` declares: each compiles to an SQL query.

A test's query selects the rows of its table that break it, with the columns ``source_row`` (the row in
the source file), ``id``, ``column_name`` (the column a failure is reported under), ``value``, ``other``
(a value from the table it is compared with) and ``detail``; :mod:`tagops.warehouse.checks` runs the
queries and reports the rows. Table and column names are written into the SQL, so the fields that hold
them accept names only.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

#: A table or column name (they are written into SQL, so nothing else is accepted).
Name = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$")]
#: The column a failure is reported under: a column, or several joined by ", " ("title, description").
Reported = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*(, [a-z_][a-z0-9_]*)*$")]


def _literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


class DataTest(BaseModel):
    """One test of one table: the SQL that selects the rows breaking it, and what they break, in words.

    The query selects ``source_row``, ``id``, ``column_name``, ``value``, ``other`` (a value from another
    table, where the test compares two) and ``detail``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str]
    column: Reported | None = None

    @property
    def problem(self) -> str:
        """What a failing row breaks."""
        raise NotImplementedError

    @property
    def other_label(self) -> str:
        """How the ``other`` value of a failing row is introduced."""
        return "other"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """The query selecting the rows of ``table`` (with ``columns``) that break this test."""
        raise NotImplementedError

    def _select(
        self,
        columns: frozenset[str],
        *,
        value: str = "NULL",
        other: str = "NULL",
        detail: str = "NULL",
        alias: str = "",
        column: str | None = None,
    ) -> str:
        row = f"{alias}source_row" if "source_row" in columns else "NULL"
        ident = f"{alias}id" if "id" in columns else "NULL"
        name = _literal(self.column or "") if column is None else column
        return (
            f"CAST({row} AS INTEGER) AS source_row, CAST({ident} AS VARCHAR) AS id, "
            f"CAST({name} AS VARCHAR) AS column_name, CAST({value} AS VARCHAR) AS value, "
            f"CAST({other} AS VARCHAR) AS other, CAST({detail} AS VARCHAR) AS detail"
        )

    def _shown(self, columns: frozenset[str], key: str) -> str:
        """The value a failing row shows: the column itself when there is one, else the compared key."""
        return str(self.column) if self.column in columns else key

    @staticmethod
    def _first_of(alias: str, columns: frozenset[str]) -> str:
        """SQL naming a row of ``alias`` by its row number and id: ``row 3, id 9``."""
        parts = [f"'row ' || {alias}.source_row" if "source_row" in columns else None]
        parts.append(f"'id ' || {alias}.id" if "id" in columns else None)
        return "concat_ws(', ', " + ", ".join(p for p in parts if p) + ")" if any(parts) else "NULL"


class NotNull(DataTest):
    """The column has a value in every row."""

    kind: ClassVar[str] = "not_null"
    column: Name

    @property
    def problem(self) -> str:
        """See :meth:`DataTest.problem`."""
        return "is missing (NULL)"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """See :meth:`DataTest.failing_rows`."""
        return f"SELECT {self._select(columns)} FROM {table} WHERE {self.column} IS NULL"


class NotBlank(DataTest):
    """The column holds a character that is not whitespace in every row."""

    kind: ClassVar[str] = "not_blank"
    column: Name

    @property
    def problem(self) -> str:
        """See :meth:`DataTest.problem`."""
        return "is empty or only whitespace"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """See :meth:`DataTest.failing_rows`."""
        c = self.column
        where = f"{c} IS NULL OR NOT regexp_matches({c}, '\\S')"
        return f"SELECT {self._select(columns, value=c)} FROM {table} WHERE {where}"


class Integer(DataTest):
    """The text column holds a non-negative integer (spaces around it allowed) in every row."""

    kind: ClassVar[str] = "integer"
    column: Name
    digits: Annotated[int, Field(ge=1, le=18)] = 18

    @property
    def problem(self) -> str:
        """See :meth:`DataTest.problem`."""
        return f"is not a non-negative integer of at most {self.digits} digits"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """See :meth:`DataTest.failing_rows`."""
        c = self.column
        where = f"{c} IS NULL OR NOT regexp_full_match(trim({c}), '[0-9]{{1,{self.digits}}}')"
        return f"SELECT {self._select(columns, value=c)} FROM {table} WHERE {where}"


class Timestamp(DataTest):
    """The text column holds an ISO 8601 date-time in every row."""

    kind: ClassVar[str] = "timestamp"
    column: Name

    @property
    def problem(self) -> str:
        """See :meth:`DataTest.problem`."""
        return "is not a date-time (ISO 8601, e.g. '2020-02-20 06:43:18')"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """See :meth:`DataTest.failing_rows`."""
        c = self.column
        where = f"TRY_CAST(trim({c}) AS TIMESTAMPTZ) IS NULL"
        return f"SELECT {self._select(columns, value=c)} FROM {table} WHERE {where}"


class _Keyed(DataTest):
    """A test comparing the column's values, or those of ``key`` (an SQL expression over the columns)."""

    column: Reported
    key: str | None = None

    @model_validator(mode="after")
    def _key_for_several_columns(self) -> Self:
        if self.key is None and "," in self.column:
            raise ValueError(f"column {self.column!r} names several columns: give the key to compare")
        return self


class Unique(_Keyed):
    """No two rows share the column's value (or ``key``'s); every row after the first is reported."""

    kind: ClassVar[str] = "unique"

    @property
    def problem(self) -> str:
        """See :meth:`DataTest.problem`."""
        return "is a duplicate"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """See :meth:`DataTest.failing_rows`."""
        key = self.key or self.column
        order = ", ".join(
            [
                *(["source_row NULLS LAST"] if "source_row" in columns else []),
                *(["id"] if "id" in columns else []),
            ]
        )
        first = self._first_of("_first", columns)
        ranked = (
            f"SELECT *, {key} AS _key, row_number() OVER (PARTITION BY {key} ORDER BY {order or key}) AS _n "
            f"FROM {table}"
        )
        shown = f"_t.{self.column}" if self.column in columns else "_t._key"
        select = self._select(columns, value=shown, alias="_t.", detail=f"'same as ' || {first}")
        return (
            f"WITH _ranked AS ({ranked}) "
            f"SELECT {select} "
            f"FROM _ranked AS _t JOIN _ranked AS _first ON _first._key = _t._key AND _first._n = 1 "
            f"WHERE _t._n > 1 AND _t._key IS NOT NULL AND CAST(_t._key AS VARCHAR) <> ''"
        )


class AcceptedValues(DataTest):
    """Every row's value is one of ``values``."""

    kind: ClassVar[str] = "accepted_values"
    column: Name
    values: tuple[str, ...] = Field(min_length=1)

    @property
    def problem(self) -> str:
        """See :meth:`DataTest.problem`."""
        return f"is not one of {list(self.values)}"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """See :meth:`DataTest.failing_rows`."""
        c = self.column
        accepted = ", ".join(_literal(v) for v in self.values)
        where = f"{c} IS NULL OR {c} NOT IN ({accepted})"
        return f"SELECT {self._select(columns, value=c)} FROM {table} WHERE {where}"


class Relationships(DataTest):
    """Every row's value appears in ``to``.``field`` (a foreign key)."""

    kind: ClassVar[str] = "relationships"
    column: Name
    to: Name
    field: Name

    @property
    def problem(self) -> str:
        """See :meth:`DataTest.problem`."""
        return f"has no match in {self.to}.{self.field}"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """See :meth:`DataTest.failing_rows`."""
        c = self.column
        missing = f"NOT EXISTS (SELECT 1 FROM {self.to} AS _o WHERE _o.{self.field} = _t.{c})"
        select = self._select(columns, value=f"_t.{c}", alias="_t.")
        return f"SELECT {select} FROM {table} AS _t WHERE _t.{c} IS NULL OR {missing}"


class SameRowCount(DataTest):
    """The table has as many rows as ``to``: rows that align by position need a partner each."""

    kind: ClassVar[str] = "same_row_count"
    to: Name

    @property
    def problem(self) -> str:
        """See :meth:`DataTest.problem`."""
        return f"has a different row count from {self.to} (their rows align by position)"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """See :meth:`DataTest.failing_rows`; the rows past the shorter table's end are the failing ones."""
        counts = f"(SELECT count(*) FROM {table}) AS here, (SELECT count(*) FROM {self.to}) AS there"
        sizes = "' (' || here || ' rows here, ' || there || ' in " + self.to + ")'"
        missing = f"'no row ' || _t.source_row || ' in {self.to}' || {sizes}"
        extra_here = (
            f"SELECT {self._select(columns, alias='_t.', detail=missing)} "
            f"FROM {table} AS _t, _n WHERE _t.source_row > there"
        )
        other = f"'{self.to} row ' || _o.source_row || ' has no row here' || {sizes}"
        extra_there = (
            f"SELECT {self._select(frozenset(), detail=other)} FROM {self.to} AS _o, _n "
            "WHERE _o.source_row > here"
        )
        return f"WITH _n AS (SELECT {counts}) {extra_here} UNION ALL {extra_there}"


class EqualRows(DataTest):
    """The table equals ``to`` row for row: matched by ``by``, the same values in ``columns``."""

    kind: ClassVar[str] = "equal_rows"
    to: Name
    by: Name
    columns: tuple[Name, ...] = Field(min_length=1)

    @property
    def problem(self) -> str:
        """See :meth:`DataTest.problem`."""
        return f"differs from {self.to} (rows matched by {self.by})"

    @property
    def other_label(self) -> str:
        """See :meth:`DataTest.other_label`."""
        return f"{self.to} has"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """See :meth:`DataTest.failing_rows`; a row is reported under its first differing column."""
        by = self.by
        differs = [f"_a.{c} IS DISTINCT FROM _b.{c}" for c in self.columns]
        first = " ".join(f"WHEN {d} THEN {_literal(c)}" for d, c in zip(differs, self.columns, strict=True))
        name = f"CASE WHEN _a.{by} IS NULL OR _b.{by} IS NULL THEN {_literal(by)} {first} END"
        value_of = " ".join(
            f"WHEN {d} THEN CAST(_a.{c} AS VARCHAR)" for d, c in zip(differs, self.columns, strict=True)
        )
        other_of = " ".join(
            f"WHEN {d} THEN CAST(_b.{c} AS VARCHAR)" for d, c in zip(differs, self.columns, strict=True)
        )
        detail = (
            f"CASE WHEN _a.{by} IS NULL THEN 'only in {self.to}' "
            f"WHEN _b.{by} IS NULL THEN 'no such row in {self.to}' END"
        )
        row = f"coalesce(_a.{by}, _b.{by})" if by == "source_row" else "_a.source_row"
        select = (
            f"CAST({row} AS INTEGER) AS source_row, CAST(coalesce(_a.id, _b.id) AS VARCHAR) AS id, "
            f"{name} AS column_name, CASE WHEN _b.{by} IS NULL OR _a.{by} IS NULL THEN NULL {value_of} END "
            f"AS value, CASE WHEN _b.{by} IS NULL OR _a.{by} IS NULL THEN NULL {other_of} END AS other, "
            f"{detail} AS detail"
        )
        where = " OR ".join([f"_a.{by} IS NULL", f"_b.{by} IS NULL", *differs])
        joined = f"{table} AS _a FULL OUTER JOIN {self.to} AS _b ON _a.{by} = _b.{by}"
        return f"SELECT {select} FROM {joined} WHERE {where}"


class Allowed(BaseModel):
    """A pair of ids (one in each table, in either order) whose shared key was reviewed and accepted."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: tuple[int, int]
    why: Annotated[str, StringConstraints(min_length=1)]


class Disjoint(_Keyed):
    """No row's value (or ``key``'s) is also in ``to``: nothing leaks between the two tables."""

    kind: ClassVar[str] = "disjoint"
    to: Name
    allow: tuple[Allowed, ...] = ()

    @property
    def problem(self) -> str:
        """See :meth:`DataTest.problem`."""
        return f"is also in {self.to} (leakage)"

    def failing_rows(self, table: str, columns: frozenset[str]) -> str:
        """See :meth:`DataTest.failing_rows`."""
        key = self.key or self.column
        pairs = [
            f"(_a.id = {a} AND _b.id = {b}) OR (_a.id = {b} AND _b.id = {a})"
            for a, b in (p.ids for p in self.allow)
        ]
        allowed = f" AND NOT ({' OR '.join(pairs)})" if pairs else ""
        shown = self._shown(columns, key)
        where = f"{_literal(self.to + ' ')} || {self._first_of('_b', columns)}"
        select = self._select(columns, value="_a._value", alias="_a.", detail=where)
        return (
            f"WITH _a AS (SELECT *, {shown} AS _value, {key} AS _key FROM {table}), "
            f"_b AS (SELECT *, {key} AS _key FROM {self.to}) "
            f"SELECT {select} FROM _a JOIN _b ON _a._key = _b._key "
            f"WHERE _a._key IS NOT NULL AND CAST(_a._key AS VARCHAR) <> ''{allowed}"
        )


KINDS: dict[str, type[DataTest]] = {
    kind.kind: kind
    for kind in (
        NotNull,
        NotBlank,
        Integer,
        Timestamp,
        Unique,
        AcceptedValues,
        Relationships,
        SameRowCount,
        EqualRows,
        Disjoint,
    )
}
