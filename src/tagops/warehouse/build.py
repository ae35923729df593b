"""Build the warehouse: raw sources into DuckDB, SQL transformations in order, data tests, a snapshot.

``tagops data build [--json] [--no-feedback] [--source-dir DIR] [--config configs/loop.yaml]`` builds
``TAGOPS_HOME/warehouse/warehouse.duckdb`` and writes a snapshot (:mod:`tagops.warehouse.snapshots`):

1. **Extract and load** (Python). projects.csv, tags.csv, dataset.csv and holdout.csv exactly as
   ``tagops data pull`` verified them (or, with ``source_dir``, as that folder holds them), each read
   with the project's CSV reader (UTF-8 checked, every field as text, multi-line fields kept) and given
   its data row number, ``source_row``: tags.csv has no id and labels projects.csv by position, so the
   position is made a column and the two row counts are tested equal. The prediction log's labelled
   feedback is read through SQLAlchemy (DuckDB's database extensions cannot be downloaded offline) and
   resolved into training rows by :func:`tagops.predlog.feedback.feedback_to_rows`, the same code
   retraining runs, so trust, one vote per key and text, and conflicts follow exactly the same rules;
   its result is loaded as a table and joined to the projects in SQL. A source is loaded when the first
   SQL file that reads it (``src_<name>``) runs, so feedback is resolved against tables already tested.
2. **Transform** (SQL). The files in ``sql/``, run in the order of their names; ``NNN_name.sql`` builds
   the table ``name`` (``000_macros.sql`` defines the expressions the others share).
3. **Test.** Each table's data tests (``sql/checks.yaml``, :mod:`tagops.warehouse.checks`) run as soon
   as it is built; a failure stops the build there and names the table, column and rows. Among them:
   ``labeled_projects`` must equal dataset.csv row for row (ids, times, texts, tags).
4. **Snapshot.** training_set, holdout, labeled_projects and recent_window as Parquet (DuckDB's
   ``COPY ... (FORMAT parquet)``, rows ordered by id) with ``lineage.json``, under an id that hashes their
   rows. The new database replaces ``warehouse.duckdb`` only after every test passed; a failed one is
   kept as ``failed.duckdb`` to inspect.

Why versioned SQL files and this runner rather than dbt: dbt-core 1.12 downloads a parser wheel from
GitHub while it installs, which machines without internet cannot do, and older dbt-core releases
conflict with the pinned stack. The runner keeps dbt's shape: one table per file, run in order, data
tests declared beside them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.data.ingest import EXPECTED_COLUMNS, read_utf8, sha256_file
from tagops.errors import DataError, TagopsError, Violation
from tagops.warehouse.checks import check_table, checks_text, load_checks, table_columns
from tagops.warehouse.snapshots import (
    LINEAGE_FILE,
    SNAPSHOT_TABLES,
    FeedbackLineage,
    Lineage,
    Snapshot,
    SourceLineage,
    TableLineage,
    load_snapshot,
    read_lineage,
    snapshots_dir,
    warehouse_dir,
)

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

    from tagops.config import RetrainConfig
    from tagops.settings import Settings

__all__ = ["Snapshot", "build_snapshot", "load_snapshot"]

logger = logging.getLogger(__name__)

DATABASE_FILE = "warehouse.duckdb"
FAILED_FILE = "failed.duckdb"
#: The CSV sources: the relation each is loaded as, its file and the columns it must have.
CSV_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "src_projects": ("projects.csv", EXPECTED_COLUMNS[:-1]),
    "src_tags": ("tags.csv", ("tag",)),
    "src_dataset": ("dataset.csv", EXPECTED_COLUMNS),
    "src_holdout": ("holdout.csv", EXPECTED_COLUMNS),
}
#: The feedback sources: rows that join training, and the recent labelled window held out of it.
FEEDBACK_SOURCES = ("src_feedback", "src_recent")
SOURCE_NAME = re.compile(r"\bsrc_[a-z0-9_]+\b")


# ------------------------------------------------------------------------------------------ the SQL
def sql_files() -> list[tuple[str, str]]:
    """The transformation files shipped in the package, ``(name, text)``, in the order they run."""
    folder = resources.files("tagops.warehouse").joinpath("sql")
    files = [(f.name, f.read_text(encoding="utf-8")) for f in folder.iterdir() if f.name.endswith(".sql")]
    return sorted(files)


def table_of(file_name: str) -> str:
    """The table a file builds: ``020_labeled_projects.sql`` -> ``labeled_projects``."""
    return file_name.removesuffix(".sql").split("_", 1)[1]


def sql_digest(files: list[tuple[str, str]]) -> tuple[str, dict[str, str]]:
    """sha256 over the SQL files and the data tests, in order, and the sha256 of each file."""
    each = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files}
    each["checks.yaml"] = hashlib.sha256(checks_text().encode()).hexdigest()
    overall = hashlib.sha256("\n".join(f"{n} {h}" for n, h in each.items()).encode()).hexdigest()
    return overall, each


# -------------------------------------------------------------------------------------- the sources
def source_paths(settings: Settings, source_dir: Path | None) -> dict[str, Path]:
    """The four CSV files: pulled and verified against the manifest, or as ``source_dir`` holds them."""
    names = [name for name, _ in CSV_SOURCES.values()]
    if source_dir is not None:
        return {name: source_dir / name for name in names}
    from tagops.data.ingest import pull_data

    return pull_data(
        settings.data_dir, mirror=settings.data_mirror, base_url=settings.data_url, files=tuple(names)
    )


def read_source(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV source as text, with its data row numbers (``source_row``, from 1) as the first column.

    Raises:
        DataError: the file is missing or not a CSV file, lacks a column, or has no data rows.

    """
    from tagops.data.ingest import read_csv

    frame = read_csv(path) if len(columns) > 1 else read_one_column(path)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns))
        raise DataError(
            [
                Violation(str(path), f"missing column '{c}' (columns found: {found})", column=c)
                for c in missing
            ]
        )
    if frame.empty:
        raise DataError([Violation(str(path), "no data rows")])
    loaded = frame.loc[:, list(columns)].astype(str).reset_index(drop=True)
    loaded.insert(0, "source_row", range(1, len(loaded) + 1))
    return loaded


def read_one_column(path: Path) -> pd.DataFrame:
    """A CSV file of one column (tags.csv), every field as text; a blank line is an empty field.

    :func:`tagops.data.ingest.read_csv` refuses files with a single column (a text with one field per
    line is rarely meant as a CSV file), and a CSV parser skips blank lines; here a blank line is a row
    whose tag is empty, since rows align with projects.csv by position.
    """
    import pandas as pd

    name = str(path)
    text = read_utf8(path, "CSV file")
    if "\x00" in text:
        raise DataError([Violation(name, "not a CSV file (it contains NUL bytes)")])
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as error:
        raise DataError([Violation(name, f"not valid CSV: {error}")]) from None
    if not rows:
        raise DataError([Violation(name, "empty file: expected a CSV header and rows")])
    header, *body = rows
    wide = [
        Violation(name, f"expected one field, found {len(r)}", row=n)
        for n, r in enumerate(body, 1)
        if len(r) > 1
    ]
    if len(header) != 1 or wide:
        raise DataError(wide or [Violation(name, f"expected one column, found {len(header)}: {header}")])
    return pd.DataFrame({header[0]: [r[0] if r else "" for r in body]}, dtype="str")


def read_labelled_feedback(settings: Settings, retrain: RetrainConfig) -> tuple[list[dict[str, Any]], str]:
    """Every labelled row of the prediction log (the reader retraining uses) and the database, masked.

    A default SQLite log that does not exist yet (nothing was ever served) has no feedback; it is not
    created just to be read.
    """
    from sqlalchemy.engine import make_url

    from tagops.predlog.engine import database_url_for, safe_url
    from tagops.predlog.log import PredictionLog

    url = database_url_for(retrain.database_url, settings)
    parsed = make_url(url)
    database = parsed.database or ""
    if (
        parsed.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not Path(database).exists()
    ):
        return [], safe_url(url)
    with PredictionLog.from_config(retrain, settings) as log:
        log.create_tables()
        return log.reader.read_labelled(), safe_url(url)


def _as_source(frame: pd.DataFrame) -> pd.DataFrame:
    """Resolved feedback rows as text columns, the form every source is loaded in."""
    import pandas as pd

    times = pd.Series(pd.to_datetime(frame["created_on"]), dtype="datetime64[us]")
    return pd.DataFrame(
        {
            "id": frame["id"].astype(str).tolist(),
            "created_on": times.dt.strftime("%Y-%m-%d %H:%M:%S").tolist(),
            "title": frame["title"].astype(str).tolist(),
            "description": frame["description"].astype(str).tolist(),
            "tag": frame["tag"].astype(str).tolist(),
        },
        columns=list(EXPECTED_COLUMNS),
        dtype="str",
    )


@dataclass
class Sources:
    """Loads each source into the connection the first time an SQL file reads it, and records lineage."""

    connection: duckdb.DuckDBPyConnection
    paths: dict[str, Path]
    settings: Settings
    retrain: RetrainConfig
    feedback: bool
    lineage: dict[str, SourceLineage] = field(default_factory=dict)
    feedback_lineage: FeedbackLineage = field(default_factory=lambda: FeedbackLineage(enabled=False))
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)

    def load(self, name: str) -> None:
        """Register source ``name`` with the connection (once)."""
        if name in self.frames:
            return
        if name in CSV_SOURCES:
            file_name, columns = CSV_SOURCES[name]
            path = self.paths[file_name]
            frame = read_source(path, columns)
            self.lineage[file_name] = SourceLineage(str(path), sha256_file(path), len(frame))
            self._register(name, frame)
        elif name in FEEDBACK_SOURCES:
            self._load_feedback()
        else:
            raise TagopsError(f"the warehouse SQL reads an unknown source {name!r} (known: {self.known()})")

    def known(self) -> list[str]:
        """Every source an SQL file may read."""
        return [*CSV_SOURCES, *FEEDBACK_SOURCES]

    def _register(self, name: str, frame: pd.DataFrame) -> None:
        self.frames[name] = frame  # the connection scans the frame in place: keep it alive
        self.connection.register(name, frame)

    def _load_feedback(self) -> None:
        """Resolve the log's feedback against labeled_projects and holdout, as built and tested here."""
        from tagops.predlog.feedback import feedback_to_rows

        labelled: list[dict[str, Any]] = []
        database = None
        if self.feedback:
            labelled, database = read_labelled_feedback(self.settings, self.retrain)
        columns = ", ".join(EXPECTED_COLUMNS)
        dataset = self.connection.execute(f"SELECT {columns} FROM labeled_projects ORDER BY source_row").df()
        holdout = self.connection.execute(f"SELECT {columns} FROM holdout ORDER BY source_row").df()
        rows = feedback_to_rows(labelled, dataset, holdout, recent_fraction=self.retrain.recent_fraction)
        self._register("src_feedback", _as_source(rows.train))
        self._register("src_recent", _as_source(rows.recent))
        self.feedback_lineage = FeedbackLineage(
            enabled=self.feedback,
            database=database,
            labelled=len(labelled),
            training_rows=len(rows.train),
            recent_rows=len(rows.recent),
            counts={k: int(v) for k, v in rows.counts.items()} if self.feedback else {},
        )
        logger.info("warehouse: feedback rows %s", rows.counts)


# --------------------------------------------------------------------------------------- the runner
def prepare_connection(connection: duckdb.DuckDBPyConnection) -> None:
    """Session settings and the Python function the SQL and the data tests use."""
    from tagops.data.clean import match_key

    # Times without an offset are UTC, as the data contract reads them.
    connection.execute("SET TimeZone = 'UTC'")
    connection.create_function("match_key", match_key, ["VARCHAR", "VARCHAR"], "VARCHAR")


def run_models(
    connection: duckdb.DuckDBPyConnection, files: list[tuple[str, str]], load_source: Callable[[str], None]
) -> list[str]:
    """Run each SQL file in order, then the data tests of the table it built; return the tables built.

    Raises:
        CheckError: a table failed its tests (the files after it are not run).
        TagopsError: a file failed to run (the message names it).

    """
    import duckdb

    checks = load_checks()
    built = []
    for name, text in files:
        for source in sorted(set(SOURCE_NAME.findall(text))):
            load_source(source)
        try:
            connection.execute(text)
        except duckdb.Error as error:
            raise TagopsError(f"warehouse SQL {name}: {error}") from error
        table = table_of(name)
        if not table_columns(connection, table):
            continue  # a file of definitions (macros), not a table
        if table in checks:
            check_table(connection, checks[table])
        built.append(table)
        logger.debug("warehouse: built %s", table)
    return built


def content_id(connection: duckdb.DuckDBPyConnection) -> str:
    """A hash of the snapshot's rows (every table, column and value, rows by id): the snapshot id."""
    digest = hashlib.sha256()
    for table, columns in SNAPSHOT_TABLES.items():
        names = ", ".join(columns)
        types = connection.execute(f"DESCRIBE SELECT {names} FROM {table}").fetchall()
        digest.update(json.dumps([table, [[str(t[0]), str(t[1])] for t in types]]).encode())
        for row in connection.execute(f"SELECT {names} FROM {table} ORDER BY id").fetchall():
            digest.update(json.dumps(row, default=str, ensure_ascii=False).encode())
            digest.update(b"\n")
    return digest.hexdigest()[:16]


def _counts(connection: duckdb.DuckDBPyConnection, table: str, column: str) -> dict[str, int]:
    rows = connection.execute(
        f"SELECT {column}, count(*) FROM {table} GROUP BY 1 ORDER BY 2 DESC, 1"
    ).fetchall()
    return {str(value): int(count) for value, count in rows}


def write_snapshot(connection: duckdb.DuckDBPyConnection, target: Path, lineage: Lineage) -> Lineage:
    """Write the snapshot's tables and lineage into ``target`` (atomically: a folder renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".writing-", dir=target.parent))
    try:
        tables = {}
        for table, columns in SNAPSHOT_TABLES.items():
            path = staging / f"{table}.parquet"
            quoted = str(path).replace("'", "''")
            select = f"SELECT {', '.join(columns)} FROM {table} ORDER BY id"
            connection.execute(f"COPY ({select}) TO '{quoted}' (FORMAT parquet)")
            tables[table] = TableLineage(path.name, sha256_file(path), lineage.tables[table].rows)
        written = replace(lineage, tables=tables)
        (staging / LINEAGE_FILE).write_text(json.dumps(written.to_json(), indent=2) + "\n", encoding="utf-8")
        for path in staging.iterdir():
            path.chmod(0o444)  # a snapshot never changes
        staging.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:
            if not (target / LINEAGE_FILE).is_file():
                raise
            return read_lineage(target)  # another build wrote the same content first
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return written


def build_snapshot(
    settings: Settings,
    *,
    feedback: bool = True,
    source_dir: Path | None = None,
    retrain: RetrainConfig | None = None,
) -> Snapshot:
    """Build the warehouse from the sources, test every table, and write a snapshot of the result.

    Args:
        settings: Where the warehouse lives (``TAGOPS_HOME/warehouse``) and where the data is pulled from.
        feedback: Add the trusted feedback of the prediction log to the training set.
        source_dir: Read the four CSV files from this folder as they are (default: pull and verify them).
        retrain: The feedback's database and recent window (default: :class:`RetrainConfig`'s defaults).

    Returns:
        The snapshot; ``created`` is false when one with the same content existed (nothing was written).

    Raises:
        DataError: a source file is unreadable or lacks a column.
        CheckError: a table failed its data tests (it names the table, the column and the rows).

    """
    import duckdb
    from filelock import FileLock

    from tagops import __version__
    from tagops.config import RetrainConfig

    started = time.perf_counter()
    retrain = retrain or RetrainConfig()
    folder = warehouse_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / "build.lock"), timeout=600):
        paths = source_paths(settings, source_dir)
        files = sql_files()
        work = folder / f".building-{os.getpid()}.duckdb"
        work.unlink(missing_ok=True)
        connection = duckdb.connect(str(work))
        try:
            prepare_connection(connection)
            sources = Sources(connection, paths, settings, retrain, feedback)
            run_models(connection, files, sources.load)
            snapshot_id = content_id(connection)
            target = snapshots_dir(settings) / snapshot_id
            created = not (target / LINEAGE_FILE).is_file()
            if created:
                sql_sha256, sql_each = sql_digest(files)
                rows = {
                    t: int(connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
                    for t in SNAPSHOT_TABLES
                }
                lineage = Lineage(
                    snapshot_id=snapshot_id,
                    created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                    sources=dict(sources.lineage),
                    sql_sha256=sql_sha256,
                    sql_files=sql_each,
                    tables={t: TableLineage("", "", n) for t, n in rows.items()},
                    feedback=sources.feedback_lineage,
                    tags=_counts(connection, "training_set", "tag"),
                    fine_tags=_counts(connection, "labeled_projects", "fine_tag"),
                    versions={"tagops": __version__, "duckdb": duckdb.__version__},
                )
                lineage = write_snapshot(connection, target, lineage)
            else:
                lineage = read_lineage(target)
        except BaseException:
            connection.close()
            with contextlib.suppress(OSError):
                work.replace(folder / FAILED_FILE)
            raise
        connection.close()
        work.replace(folder / DATABASE_FILE)
        (folder / FAILED_FILE).unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    logger.info(
        "warehouse: snapshot %s (%s) in %.2f s", snapshot_id, "new" if created else "unchanged", seconds
    )
    return Snapshot(snapshot_id, target, lineage, created, seconds)
