"""Versioned snapshots of the warehouse: what each holds, reading one back, and what changed between two.

A snapshot is a folder ``TAGOPS_HOME/warehouse/snapshots/<id>/`` with one Parquet file per table
(:data:`SNAPSHOT_TABLES`, rows ordered by id) and ``lineage.json`` (:class:`Lineage`): the sha256 of
each source file and of the SQL that built it, row counts, the feedback rows, when it was made and the
sha256 of each Parquet file. The id is a hash of the rows themselves, so building again from unchanged
sources gives the same id and writes nothing; the files are made read-only and never rewritten.

``tagops data snapshots [--json]`` lists them; ``tagops data diff A B [--json]`` compares two.
:func:`load_snapshot` is how training reads one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.data.ingest import EXPECTED_COLUMNS, sha256_file
from tagops.errors import IntegrityError, TagopsError

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from tagops.settings import Settings

LINEAGE_FILE = "lineage.json"
#: The tables a snapshot keeps and their columns, in file order. ``origin`` says whether a training row
#: is a labelled project or feedback; ``fine_tag`` is tags.csv's tag before the finer topics collapse.
SNAPSHOT_TABLES: dict[str, tuple[str, ...]] = {
    "training_set": (*EXPECTED_COLUMNS, "origin"),
    "holdout": EXPECTED_COLUMNS,
    "labeled_projects": ("source_row", *EXPECTED_COLUMNS, "fine_tag"),
    "recent_window": EXPECTED_COLUMNS,
}
#: The tables ``tagops data diff`` compares.
DIFF_TABLES: tuple[str, ...] = ("training_set", "holdout")
#: Example rows of each kind of change a diff keeps.
DIFF_EXAMPLES = 5


def warehouse_dir(settings: Settings) -> Path:
    """Where the warehouse lives: ``TAGOPS_HOME/warehouse``."""
    return settings.home / "warehouse"


def snapshots_dir(settings: Settings) -> Path:
    """Where the snapshots are kept: one folder per snapshot id."""
    return warehouse_dir(settings) / "snapshots"


@dataclass(frozen=True)
class SourceLineage:
    """One source file a snapshot was built from."""

    path: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class TableLineage:
    """One table of a snapshot: its Parquet file, that file's sha256 and its rows."""

    file: str
    sha256: str
    rows: int


@dataclass(frozen=True)
class FeedbackLineage:
    """What the prediction log gave: labelled rows read, and rows in training and the recent window."""

    enabled: bool
    #: The database it was read from (password masked); ``None`` when no log was read.
    database: str | None = None
    labelled: int = 0
    training_rows: int = 0
    recent_rows: int = 0
    #: The resolution's counts (:func:`tagops.predlog.feedback.feedback_to_rows`): what was left out, why.
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Lineage:
    """Everything a snapshot was made from, written beside its tables as ``lineage.json``."""

    snapshot_id: str
    created_at: str
    sources: dict[str, SourceLineage]
    #: sha256 over every SQL file and the data tests, in order; and of each file.
    sql_sha256: str
    sql_files: dict[str, str]
    tables: dict[str, TableLineage]
    feedback: FeedbackLineage
    #: Rows per tag in training_set, and per tags.csv tag in labeled_projects.
    tags: dict[str, int]
    fine_tags: dict[str, int]
    versions: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The lineage as JSON."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lineage:
        """The lineage :meth:`to_json` wrote."""
        return cls(
            snapshot_id=data["snapshot_id"],
            created_at=data["created_at"],
            sources={name: SourceLineage(**s) for name, s in data["sources"].items()},
            sql_sha256=data["sql_sha256"],
            sql_files=dict(data["sql_files"]),
            tables={name: TableLineage(**t) for name, t in data["tables"].items()},
            feedback=FeedbackLineage(**data["feedback"]),
            tags=dict(data["tags"]),
            fine_tags=dict(data["fine_tags"]),
            versions=dict(data["versions"]),
        )

    def rows(self, table: str) -> int:
        """Rows of one table (0 when the snapshot has no such table)."""
        return self.tables[table].rows if table in self.tables else 0


@dataclass(frozen=True)
class Snapshot:
    """A snapshot as a build returns it."""

    snapshot_id: str
    path: Path
    lineage: Lineage
    #: False when a snapshot with the same content existed already and nothing was written.
    created: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """What ``tagops data build --json`` prints."""
        return {
            "snapshot_id": self.snapshot_id,
            "created": self.created,
            "path": str(self.path),
            "seconds": round(self.seconds, 3),
            "rows": {name: table.rows for name, table in self.lineage.tables.items()},
            "feedback_rows": self.lineage.feedback.training_rows,
            "sources": {name: source.sha256 for name, source in self.lineage.sources.items()},
        }


# ------------------------------------------------------------------------------------------ reading
def read_lineage(folder: Path) -> Lineage:
    """The lineage of the snapshot in ``folder``."""
    path = folder / LINEAGE_FILE
    try:
        return Lineage.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise IntegrityError(f"{path}: not a readable snapshot lineage ({error})") from error


def list_snapshots(settings: Settings) -> list[Lineage]:
    """Every snapshot, oldest first."""
    root = snapshots_dir(settings)
    if not root.is_dir():
        return []
    found = [read_lineage(p) for p in root.iterdir() if p.is_dir() and (p / LINEAGE_FILE).is_file()]
    return sorted(found, key=lambda lineage: (lineage.created_at, lineage.snapshot_id))


def resolve_snapshot(settings: Settings, reference: str) -> Path:
    """The folder of a snapshot named by its id, a unique prefix of it, or ``latest``."""
    root = snapshots_dir(settings)
    if reference == "latest":
        snapshots = list_snapshots(settings)
        if not snapshots:
            raise TagopsError(f"{root}: no snapshots yet; `tagops data build` makes one")
        return root / snapshots[-1].snapshot_id
    if not reference or not reference.isalnum():
        raise TagopsError(f"{reference!r} is not a snapshot id; `tagops data snapshots` lists them")
    matches = (
        sorted(p for p in root.glob(f"{reference}*") if (p / LINEAGE_FILE).is_file()) if root.is_dir() else []
    )
    if not matches:
        raise TagopsError(f"{root}: no snapshot {reference!r}; `tagops data snapshots` lists them")
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches[:5])
        raise TagopsError(f"snapshot id prefix {reference!r} is ambiguous ({names}); give more characters")
    return matches[0]


def _table_path(folder: Path, lineage: Lineage, table: str) -> Path:
    """A table's Parquet file, checked against the sha256 its lineage recorded."""
    if table not in lineage.tables:
        raise TagopsError(f"{folder}: the snapshot has no table {table!r} (tables: {sorted(lineage.tables)})")
    entry = lineage.tables[table]
    path = folder / entry.file
    if not path.is_file():
        raise IntegrityError(f"{path}: missing from snapshot {lineage.snapshot_id}")
    actual = sha256_file(path)
    if actual != entry.sha256:
        raise IntegrityError(
            f"{path}: changed since it was written (sha256 {actual}, lineage says {entry.sha256})"
        )
    return path


def _parquet(path: Path) -> str:
    return "read_parquet('" + str(path).replace("'", "''") + "')"


def load_snapshot_table(settings: Settings, snapshot_id: str, table: str) -> pd.DataFrame:
    """One table of a snapshot, all its columns, rows ordered by id (its file is verified first)."""
    import duckdb

    folder = resolve_snapshot(settings, snapshot_id)
    lineage = read_lineage(folder)
    path = _table_path(folder, lineage, table)
    with duckdb.connect() as connection:
        frame = connection.execute(f"SELECT * FROM {_parquet(path)} ORDER BY id").df()
    return _typed(frame)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Types as :func:`tagops.data.validate.load_projects` returns them: int64 id, datetime, text."""
    typed = frame.copy()
    typed["id"] = typed["id"].astype("int64")
    typed["created_on"] = typed["created_on"].astype("datetime64[us]")
    for column in ("title", "description", "tag", "origin", "fine_tag"):
        if column in typed.columns:
            typed[column] = typed[column].astype("str")
    return typed.reset_index(drop=True)


def load_snapshot(settings: Settings, snapshot_id: str) -> tuple[pd.DataFrame, pd.DataFrame, Lineage]:
    """The training rows and the holdout of a snapshot, with its lineage.

    Both frames have the columns of dataset.csv and holdout.csv (``id``, ``created_on``, ``title``,
    ``description``, ``tag``), typed as :func:`tagops.data.validate.load_projects` types them, rows
    ordered by id. Each Parquet file is checked against the sha256 in the lineage before it is read.

    Raises:
        TagopsError: no such snapshot (or an ambiguous prefix).
        IntegrityError: a file of the snapshot is missing or changed.

    """
    folder = resolve_snapshot(settings, snapshot_id)
    lineage = read_lineage(folder)
    columns = list(EXPECTED_COLUMNS)
    training = load_snapshot_table(settings, folder.name, "training_set")[columns]
    holdout = load_snapshot_table(settings, folder.name, "holdout")[columns]
    return training, holdout, lineage


# --------------------------------------------------------------------------------------------- diff
@dataclass(frozen=True)
class TableDiff:
    """How one table changed from snapshot A to snapshot B, by id."""

    table: str
    rows_a: int
    rows_b: int
    added: int
    removed: int
    #: Same id, another tag (whether or not the text changed too).
    relabelled: int
    #: Same id and tag, another title or description.
    text_changed: int
    #: A few rows of each kind: id, title and the tag in A and in B.
    examples: dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class SnapshotDiff:
    """What changed between two snapshots."""

    a: str
    b: str
    tables: tuple[TableDiff, ...]

    def to_json(self) -> dict[str, Any]:
        """What ``tagops data diff --json`` prints."""
        return {"a": self.a, "b": self.b, "tables": {t.table: asdict(t) for t in self.tables}}


_CHANGES = ("added", "removed", "relabelled", "text_changed")


def _diff_table(connection: duckdb.DuckDBPyConnection, table: str, path_a: Path, path_b: Path) -> TableDiff:
    kind = (
        "CASE WHEN a.id IS NULL THEN 'added' WHEN b.id IS NULL THEN 'removed' "
        "WHEN a.tag IS DISTINCT FROM b.tag THEN 'relabelled' "
        "WHEN a.title IS DISTINCT FROM b.title OR a.description IS DISTINCT FROM b.description "
        "THEN 'text_changed' END"
    )
    connection.execute(
        f"CREATE OR REPLACE TEMP TABLE changes AS SELECT {kind} AS kind, coalesce(a.id, b.id) AS id, "
        "coalesce(b.title, a.title) AS title, a.tag AS tag_a, b.tag AS tag_b "
        f"FROM {_parquet(path_a)} AS a FULL OUTER JOIN {_parquet(path_b)} AS b ON a.id = b.id"
    )
    counts = dict(connection.execute("SELECT kind, count(*) FROM changes GROUP BY kind").fetchall())
    examples: dict[str, list[dict[str, Any]]] = {}
    for change in _CHANGES:
        rows = connection.execute(
            "SELECT id, title, tag_a, tag_b FROM changes WHERE kind = ? ORDER BY id LIMIT ?",
            [change, DIFF_EXAMPLES],
        ).fetchall()
        examples[change] = [{"id": r[0], "title": r[1], "tag_a": r[2], "tag_b": r[3]} for r in rows]
    rows_a, rows_b = (
        int(connection.execute(f"SELECT count(*) FROM {_parquet(p)}").fetchone()[0])  # type: ignore[index]
        for p in (path_a, path_b)
    )
    added, removed, relabelled, text_changed = (int(counts.get(change, 0)) for change in _CHANGES)
    return TableDiff(table, rows_a, rows_b, added, removed, relabelled, text_changed, examples)


def diff_snapshots(settings: Settings, a: str, b: str) -> SnapshotDiff:
    """Rows added, removed, relabelled and with changed text from snapshot ``a`` to ``b``, per table."""
    import duckdb

    folder_a, folder_b = resolve_snapshot(settings, a), resolve_snapshot(settings, b)
    lineage_a, lineage_b = read_lineage(folder_a), read_lineage(folder_b)
    tables = []
    with duckdb.connect() as connection:
        for table in DIFF_TABLES:
            if table in lineage_a.tables and table in lineage_b.tables:
                path_a = _table_path(folder_a, lineage_a, table)
                path_b = _table_path(folder_b, lineage_b, table)
                tables.append(_diff_table(connection, table, path_a, path_b))
    return SnapshotDiff(lineage_a.snapshot_id, lineage_b.snapshot_id, tuple(tables))
