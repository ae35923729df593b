"""The warehouse: raw sources → SQL tables with data tests → content-addressed snapshots, on small CSVs."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tagops import LABELS
from tagops.data.ingest import sha256_file
from tagops.errors import DataError, IntegrityError, TagopsError
from tagops.settings import Settings
from tagops.warehouse.build import DATABASE_FILE, FAILED_FILE, build_snapshot, sql_digest, sql_files
from tagops.warehouse.checks import CheckError, load_checks, parse_checks
from tagops.warehouse.snapshots import (
    Snapshot,
    diff_snapshots,
    list_snapshots,
    load_snapshot,
    load_snapshot_table,
    resolve_snapshot,
    snapshots_dir,
    warehouse_dir,
)

from .conftest import make_projects

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("tagops_home")]

PROJECT_COLUMNS = ["id", "created_on", "title", "description"]


@dataclass
class Sources:
    """The four CSV files of a build, as frames of text (written by :meth:`write`)."""

    projects: pd.DataFrame
    tags: pd.DataFrame
    dataset: pd.DataFrame
    holdout: pd.DataFrame

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        self.projects.to_csv(folder / "projects.csv", index=False)
        self.tags.to_csv(folder / "tags.csv", index=False)
        self.dataset.to_csv(folder / "dataset.csv", index=False)
        self.holdout.to_csv(folder / "holdout.csv", index=False)
        return folder


def make_sources() -> Sources:
    """12 labelled projects (3 per label; two `other` rows have finer tags in tags.csv), 8 holdout rows."""
    dataset = make_projects(3)
    holdout = make_projects(2, start_id=100, offset=50)
    tags = dataset[["tag"]].copy()
    other = tags.index[tags["tag"] == "other"]
    tags.loc[other[0], "tag"] = "graph-learning"
    tags.loc[other[1], "tag"] = "time-series"
    return Sources(dataset[PROJECT_COLUMNS].copy(), tags, dataset, holdout)


def build(folder: Path, sources: Sources | None = None) -> Snapshot:
    """Write ``sources`` (default: :func:`make_sources`) into ``folder`` and build from them, no feedback."""
    return build_snapshot(Settings(), source_dir=(sources or make_sources()).write(folder), feedback=False)


def tables_in(database: Path) -> set[str]:
    import duckdb

    with duckdb.connect(str(database), read_only=True) as connection:
        return {
            row[0]
            for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }


# ------------------------------------------------------------------------------------- a good build
def test_a_build_writes_a_snapshot_equal_to_the_sources(tmp_path: Path) -> None:
    sources = make_sources()
    snapshot = build(tmp_path / "src", sources)
    assert snapshot.created
    assert snapshot.path == snapshots_dir(Settings()) / snapshot.snapshot_id
    assert sorted(p.name for p in snapshot.path.iterdir()) == [
        "holdout.parquet",
        "labeled_projects.parquet",
        "lineage.json",
        "recent_window.parquet",
        "training_set.parquet",
    ]
    training, holdout, lineage = load_snapshot(Settings(), snapshot.snapshot_id)
    assert (
        list(training.columns) == list(holdout.columns) == ["id", "created_on", "title", "description", "tag"]
    )
    assert str(training["id"].dtype) == "int64" and str(training["created_on"].dtype).startswith("datetime64")
    assert training["id"].tolist() == sorted(int(i) for i in sources.dataset["id"])
    assert training["tag"].tolist() == sources.dataset["tag"].tolist()
    assert training["title"].tolist() == sources.dataset["title"].tolist()
    assert holdout["id"].tolist() == [int(i) for i in sources.holdout["id"]]
    assert lineage.snapshot_id == snapshot.snapshot_id
    assert (warehouse_dir(Settings()) / DATABASE_FILE).is_file()


def test_labeled_projects_keeps_the_finer_tag_beside_the_product_tag(tmp_path: Path) -> None:
    snapshot = build(tmp_path / "src")
    labeled = load_snapshot_table(Settings(), snapshot.snapshot_id, "labeled_projects")
    finer = labeled[labeled["fine_tag"] != labeled["tag"]]
    assert sorted(finer["fine_tag"]) == ["graph-learning", "time-series"]
    assert set(finer["tag"]) == {"other"}
    assert snapshot.lineage.fine_tags == {
        "computer-vision": 3,
        "mlops": 3,
        "natural-language-processing": 3,
        "graph-learning": 1,
        "other": 1,
        "time-series": 1,
    }
    assert snapshot.lineage.tags == dict.fromkeys(LABELS, 3)


def test_texts_match_across_line_endings_and_trailing_spaces(tmp_path: Path) -> None:
    # projects.csv writes "\r\n" inside fields and trims the end of its lines; dataset.csv does neither.
    sources = make_sources()
    sources.projects.loc[0, "description"] = "First line.\r\nSecond line."
    sources.dataset.loc[0, "description"] = "First line.\nSecond line.  "
    snapshot = build(tmp_path / "src", sources)
    training, _, _ = load_snapshot(Settings(), snapshot.snapshot_id)
    assert training.loc[training["id"] == int(sources.dataset.loc[0, "id"]), "description"].item() == (
        "First line.\nSecond line."
    )


def test_lineage_records_sources_sql_rows_and_feedback(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    snapshot = build(folder)
    lineage = json.loads((snapshot.path / "lineage.json").read_text(encoding="utf-8"))
    assert set(lineage["sources"]) == {"projects.csv", "tags.csv", "dataset.csv", "holdout.csv"}
    for name, source in lineage["sources"].items():
        assert source["sha256"] == sha256_file(folder / name)
        assert source["path"] == str(folder / name)
    assert lineage["sources"]["tags.csv"]["rows"] == 12 and lineage["sources"]["holdout.csv"]["rows"] == 8
    overall, each = sql_digest(sql_files())
    assert lineage["sql_sha256"] == overall and lineage["sql_files"] == each
    assert "checks.yaml" in each and "020_labeled_projects.sql" in each
    assert {name: t["rows"] for name, t in lineage["tables"].items()} == {
        "training_set": 12,
        "holdout": 8,
        "labeled_projects": 12,
        "recent_window": 0,
    }
    for table in lineage["tables"].values():
        assert table["sha256"] == sha256_file(snapshot.path / table["file"])
    assert lineage["feedback"]["enabled"] is False and lineage["feedback"]["training_rows"] == 0
    assert datetime.fromisoformat(lineage["created_at"]).tzinfo is not None
    assert lineage["versions"]["duckdb"]


# ------------------------------------------------------------------------------ content-addressed ids
def test_rebuilding_unchanged_sources_gives_the_same_id_and_writes_nothing(tmp_path: Path) -> None:
    first = build(tmp_path / "src")
    written = {p: p.stat().st_mtime_ns for p in first.path.iterdir()}
    second = build_snapshot(Settings(), source_dir=tmp_path / "src", feedback=False)
    assert second.snapshot_id == first.snapshot_id
    assert not second.created
    assert {p: p.stat().st_mtime_ns for p in second.path.iterdir()} == written
    assert [p.name for p in snapshots_dir(Settings()).iterdir()] == [first.snapshot_id]
    assert second.lineage.created_at == first.lineage.created_at


def test_a_changed_row_gives_a_new_snapshot_and_the_old_one_stays(tmp_path: Path) -> None:
    sources = make_sources()
    first = build(tmp_path / "a", sources)
    sources.projects.loc[5, "description"] = "A rewritten description."
    sources.dataset.loc[5, "description"] = "A rewritten description."
    second = build(tmp_path / "b", sources)
    assert second.snapshot_id != first.snapshot_id and second.created
    assert [s.snapshot_id for s in list_snapshots(Settings())] == [first.snapshot_id, second.snapshot_id]
    diff = diff_snapshots(Settings(), first.snapshot_id, second.snapshot_id).to_json()
    training = diff["tables"]["training_set"]
    assert (training["added"], training["removed"], training["relabelled"], training["text_changed"]) == (
        0,
        0,
        0,
        1,
    )
    assert training["examples"]["text_changed"][0]["id"] == int(sources.dataset.loc[5, "id"])


def test_diff_counts_rows_added_removed_and_relabelled(tmp_path: Path) -> None:
    sources = make_sources()
    first = build(tmp_path / "a", sources)
    removed_id, relabelled_at = int(sources.dataset.loc[0, "id"]), 4
    relabelled_id = int(sources.dataset.loc[relabelled_at, "id"])
    new = make_projects(1, start_id=500, offset=90).iloc[[0]]
    dataset = sources.dataset.copy()
    dataset.loc[relabelled_at, "tag"] = "other"
    tags = sources.tags.copy()
    tags.loc[relabelled_at, "tag"] = "reinforcement-learning"
    dataset = pd.concat([dataset.iloc[1:], new], ignore_index=True)
    tags = pd.concat([tags.iloc[1:], new[["tag"]]], ignore_index=True)
    changed = Sources(dataset[PROJECT_COLUMNS].copy(), tags, dataset, sources.holdout)
    second = build(tmp_path / "b", changed)
    diff = diff_snapshots(Settings(), first.snapshot_id[:6], "latest")
    assert (diff.a, diff.b) == (first.snapshot_id, second.snapshot_id)
    training = next(t for t in diff.tables if t.table == "training_set")
    assert (training.rows_a, training.rows_b) == (12, 12)
    assert (training.added, training.removed, training.relabelled, training.text_changed) == (1, 1, 1, 0)
    assert [e["id"] for e in training.examples["added"]] == [500]
    assert [e["id"] for e in training.examples["removed"]] == [removed_id]
    (relabelled,) = training.examples["relabelled"]
    assert relabelled["id"] == relabelled_id and relabelled["tag_b"] == "other"
    holdout = next(t for t in diff.tables if t.table == "holdout")
    assert (holdout.added, holdout.removed, holdout.relabelled) == (0, 0, 0)


def test_snapshot_references_and_integrity(tmp_path: Path) -> None:
    snapshot = build(tmp_path / "src")
    assert resolve_snapshot(Settings(), snapshot.snapshot_id[:4]) == snapshot.path
    with pytest.raises(TagopsError, match="no snapshot 'ffff"):
        resolve_snapshot(Settings(), "ffff0000")
    with pytest.raises(TagopsError, match="not a snapshot id"):
        resolve_snapshot(Settings(), "../etc")
    parquet = snapshot.path / "holdout.parquet"
    parquet.chmod(0o644)
    parquet.write_bytes(parquet.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(IntegrityError, match=r"holdout\.parquet: changed since it was written"):
        load_snapshot(Settings(), snapshot.snapshot_id)


# ------------------------------------------------------------------------- bad sources stop the build
Mutation = Callable[[Sources], None]


def _set(frame: str, row: int, column: str, value: str) -> Mutation:
    def mutate(sources: Sources) -> None:
        getattr(sources, frame).loc[row, column] = value

    return mutate


def _duplicate_id(sources: Sources) -> None:
    sources.projects.loc[3, "id"] = sources.projects.loc[2, "id"]


def _short_tags(sources: Sources) -> None:
    sources.tags = sources.tags.iloc[:-1]


def _id_in_holdout(sources: Sources) -> None:
    sources.holdout.loc[1, "id"] = sources.dataset.loc[6, "id"]


def _title_in_holdout(sources: Sources) -> None:
    sources.holdout.loc[2, "title"] = sources.dataset.loc[7, "title"].upper() + "!"


def _relabel_dataset(sources: Sources) -> None:
    sources.dataset.loc[4, "tag"] = "mlops" if sources.dataset.loc[4, "tag"] != "mlops" else "other"


def _extra_dataset_row(sources: Sources) -> None:
    sources.dataset = pd.concat([sources.dataset, make_projects(1, start_id=600, offset=70).iloc[[0]]])


def _reorder_dataset(sources: Sources) -> None:
    sources.dataset = sources.dataset.iloc[[1, 0, *range(2, 12)]].reset_index(drop=True)


@dataclass(frozen=True)
class BadSource:
    mutate: Mutation
    table: str
    column: str
    expected: tuple[str, ...]
    stops_before: str


BAD_SOURCES = {
    "duplicate id": BadSource(
        _duplicate_id,
        "raw_projects",
        "id",
        ("unique: is a duplicate", "row 4", "id 3", "same as row 3"),
        "raw_tags",
    ),
    "empty title": BadSource(
        _set("projects", 1, "title", ""), "raw_projects", "title", ("not_blank", "row 2", "id 2"), "raw_tags"
    ),
    "whitespace title": BadSource(
        _set("projects", 1, "title", "  \t "),
        "raw_projects",
        "title",
        ("not_blank", "row 2", "id 2"),
        "raw_tags",
    ),
    "id not an integer": BadSource(
        _set("projects", 2, "id", "7a"), "raw_projects", "id", ("integer", "row 3", "value '7a'"), "raw_tags"
    ),
    "bad created_on": BadSource(
        _set("projects", 2, "created_on", "2020-02-30 10:00:00"),
        "raw_projects",
        "created_on",
        ("timestamp: is not a date-time", "row 3", "value '2020-02-30 10:00:00'"),
        "raw_tags",
    ),
    "unknown tag in tags.csv": BadSource(
        _set("tags", 0, "tag", "vision"),
        "raw_tags",
        "tag",
        ("relationships: has no match in tag_map.fine_tag", "row 1", "value 'vision'"),
        "raw_dataset",
    ),
    "tags.csv shorter than projects.csv": BadSource(
        _short_tags,
        "raw_tags",
        "",
        ("same_row_count", "raw_projects row 12 has no row here (11 rows here, 12 in raw_projects)"),
        "raw_dataset",
    ),
    "unknown tag in dataset.csv": BadSource(
        _set("dataset", 5, "tag", "robotics"),
        "raw_dataset",
        "tag",
        ("accepted_values: is not one of", "row 6", "value 'robotics'"),
        "raw_holdout",
    ),
    "id in both dataset and holdout": BadSource(
        _id_in_holdout,
        "holdout",
        "id",
        ("disjoint: is also in dataset (leakage)", "row 2", "id 7", "dataset row 7, id 7"),
        "labeled_projects",
    ),
    "title in both dataset and holdout": BadSource(
        _title_in_holdout,
        "holdout",
        "title",
        ("disjoint", "row 3", "dataset row 8, id 8"),
        "labeled_projects",
    ),
    "tag differs from dataset.csv": BadSource(
        _relabel_dataset,
        "labeled_projects",
        "tag",
        ("equal_rows: differs from dataset (rows matched by source_row)", "row 5", "id 5", "dataset has"),
        "feedback_rows",
    ),
    "dataset.csv has a row projects.csv lacks": BadSource(
        _extra_dataset_row,
        "labeled_projects",
        "source_row",
        ("equal_rows", "row 13", "id 600", "only in dataset"),
        "feedback_rows",
    ),
    "dataset.csv in another order": BadSource(
        _reorder_dataset,
        "labeled_projects",
        "id",
        ("equal_rows", "row 1", "value '1'", "dataset has '2'"),
        "feedback_rows",
    ),
}


@pytest.mark.parametrize("case", BAD_SOURCES.values(), ids=BAD_SOURCES.keys())
def test_a_bad_source_row_stops_the_build_naming_table_column_and_rows(
    tmp_path: Path, case: BadSource
) -> None:
    sources = make_sources()
    case.mutate(sources)
    with pytest.raises(CheckError) as info:
        build(tmp_path / "src", sources)
    error = info.value
    message = str(error)
    assert error.table == case.table
    assert message.splitlines()[0].startswith(f"table {case.table}: 1 data test failed; nothing downstream")
    failing = [v for v in error.violations[1:] if v.file.startswith(f"table {case.table} (")]
    assert failing, message
    if case.column:
        assert f"column '{case.column}'" in str(failing[0]), message
    for part in case.expected:
        assert part in message, message
    # Nothing downstream was built and no snapshot written; the failed database is kept to inspect.
    assert not snapshots_dir(Settings()).exists() or not any(snapshots_dir(Settings()).iterdir())
    assert not (warehouse_dir(Settings()) / DATABASE_FILE).exists()
    built = tables_in(warehouse_dir(Settings()) / FAILED_FILE)
    assert case.table in built and case.stops_before not in built and "training_set" not in built


def test_a_failed_build_leaves_the_last_good_warehouse_in_place(tmp_path: Path) -> None:
    good = build(tmp_path / "good")
    sources = make_sources()
    _duplicate_id(sources)
    with pytest.raises(CheckError):
        build(tmp_path / "bad", sources)
    assert "training_set" in tables_in(warehouse_dir(Settings()) / DATABASE_FILE)
    assert [s.snapshot_id for s in list_snapshots(Settings())] == [good.snapshot_id]
    assert build(tmp_path / "good").snapshot_id == good.snapshot_id
    assert not (warehouse_dir(Settings()) / FAILED_FILE).exists()


def test_many_failing_rows_show_a_few_and_count_the_rest(tmp_path: Path) -> None:
    sources = make_sources()
    sources.projects["created_on"] = "not a date"
    with pytest.raises(CheckError) as info:
        build(tmp_path / "src", sources)
    lines = str(info.value).splitlines()
    assert len([line for line in lines if "value 'not a date'" in line]) == 5
    assert any(
        line.endswith("timestamp: is not a date-time (ISO 8601, e.g. '2020-02-20 06:43:18'): 7 more rows")
        for line in lines
    )


def test_a_missing_column_or_file_is_a_data_error_naming_the_file(tmp_path: Path) -> None:
    sources = make_sources()
    sources.projects = sources.projects.drop(columns=["created_on"])
    with pytest.raises(DataError, match=r"projects\.csv, column 'created_on': missing column 'created_on'"):
        build(tmp_path / "src", sources)
    folder = make_sources().write(tmp_path / "other")
    (folder / "tags.csv").unlink()
    with pytest.raises(DataError, match=r"tags\.csv: file not found"):
        build_snapshot(Settings(), source_dir=folder, feedback=False)


def test_a_blank_line_in_tags_csv_is_an_empty_tag_at_its_position(tmp_path: Path) -> None:
    folder = make_sources().write(tmp_path / "src")
    lines = (folder / "tags.csv").read_text(encoding="utf-8").splitlines()
    lines[3] = ""
    (folder / "tags.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CheckError, match=r"table raw_tags \(tags\.csv\), row 3, column 'tag': relationships"):
        build_snapshot(Settings(), source_dir=folder, feedback=False)


# -------------------------------------------------------------------------------- the data tests file
def test_the_data_tests_cover_every_table_and_use_the_labels() -> None:
    checks = load_checks()
    tables = {name.removesuffix(".sql").split("_", 1)[1] for name, _ in sql_files()} - {"macros"}
    assert tables == set(checks)
    for table in checks.values():
        assert table.tests, f"{table.table} has no data tests"
        for test in table.tests:
            if test.kind == "accepted_values" and test.column == "tag":
                assert test.values == LABELS  # type: ignore[attr-defined]
    kinds = {test.kind for table in checks.values() for test in table.tests}
    assert {"unique", "not_null", "accepted_values", "relationships", "disjoint", "equal_rows"} <= kinds


def test_a_bad_data_tests_file_names_each_entry() -> None:
    raw = {
        "tables": {
            "t": {
                "source": "x.csv",
                "tests": [
                    {"unique": {"column": "title, description"}},
                    {"sometimes": {"column": "id"}},
                    {"not_null": {"column": "id; DROP TABLE t"}},
                ],
            }
        }
    }
    with pytest.raises(DataError) as info:
        parse_checks(raw, file="checks.yaml")
    messages = [str(v) for v in info.value.violations]
    assert any("tables.t.tests[0].unique" in m and "give the key" in m for m in messages)
    assert any("tables.t.tests[1]: unknown test kind 'sometimes'" in m for m in messages)
    assert any("tables.t.tests[2].not_null.column" in m for m in messages)


# ------------------------------------------------------------------------------------------ feedback
def _log_feedback(settings: Settings, items: list[tuple[str, str, str, str]]) -> None:
    """Predictions with feedback in the default SQLite log: (title, description, tag, key role)."""
    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog
    from tagops.serving.keys import KeyStore

    store = PredictionLog(default_database_url(settings))
    store.create_tables()
    keys = {role: KeyStore(store.engine).create(f"{role} key", role)[0] for role in ("labeller", "client")}
    start = datetime.now(UTC) - timedelta(hours=1)
    rows = [
        {
            "id": uuid.uuid4().hex,
            "created_at": start + timedelta(seconds=i),
            "request_id": None,
            "model_name": "tagops",
            "model_version": 1,
            "model_uri": "models:/tagops@champion",
            "title": title,
            "description": description,
            "tag": "other",
            "confidence": 0.5,
            "abstained": False,
            "probabilities": dict.fromkeys(LABELS, 0.25),
            "latency_ms": 1.0,
            "replica": "test",
        }
        for i, (title, description, _, _) in enumerate(items)
    ]
    store.writer.start()
    assert store.writer.submit(rows) and store.writer.flush()
    for row, (_, _, tag, role) in zip(rows, items, strict=True):
        store.add_feedback(prediction_id=row["id"], tag=tag, key_id=keys[role].key_id)
    store.writer.stop()
    store.dispose()


def test_trusted_feedback_joins_the_training_set_by_the_retraining_rules(tmp_path: Path) -> None:
    from tagops.config import RetrainConfig

    settings = Settings()
    sources = make_sources()
    trusted = [
        (
            f"Streaming tokenizer library {i}",
            f"Fast text tokenization, release {i}.",
            "natural-language-processing",
            "labeller",
        )
        for i in range(4)
    ]
    items = [
        *trusted,
        (
            "Camera calibration kit",
            "Calibrate cameras from photos.",
            "computer-vision",
            "client",
        ),  # waits for review
        (sources.holdout.loc[0, "title"], "Same title as a holdout project.", "mlops", "labeller"),  # leakage
    ]
    _log_feedback(settings, items)
    folder = sources.write(tmp_path / "src")
    snapshot = build_snapshot(settings, source_dir=folder, retrain=RetrainConfig(recent_fraction=0.25))
    feedback = snapshot.lineage.feedback
    assert feedback.enabled and feedback.labelled == 6 and feedback.database.startswith("sqlite:///")
    assert (feedback.training_rows, feedback.recent_rows) == (3, 1)
    assert feedback.counts["pending_review"] == 1 and feedback.counts["known_titles"] == 1
    training = load_snapshot_table(settings, snapshot.snapshot_id, "training_set")
    from_feedback = training[training["origin"] == "feedback"]
    assert sorted(from_feedback["title"]) == [t for t, *_ in trusted[:3]]
    assert set(from_feedback["tag"]) == {"natural-language-processing"}
    assert from_feedback["id"].min() > max(int(i) for i in [*sources.dataset["id"], *sources.holdout["id"]])
    assert len(training) == 12 + 3
    recent = load_snapshot_table(settings, snapshot.snapshot_id, "recent_window")
    assert recent["title"].tolist() == [trusted[3][0]]
    # The same log again: the same rows, the same snapshot.
    assert build_snapshot(
        settings, source_dir=folder, retrain=RetrainConfig(recent_fraction=0.25)
    ).snapshot_id == (snapshot.snapshot_id)
    without = build_snapshot(settings, source_dir=folder, feedback=False)
    assert without.snapshot_id != snapshot.snapshot_id and without.lineage.rows("training_set") == 12


def test_no_prediction_log_means_no_feedback_and_no_database_created(tmp_path: Path) -> None:
    settings = Settings()
    snapshot = build_snapshot(settings, source_dir=make_sources().write(tmp_path / "src"))
    assert snapshot.lineage.feedback.enabled and snapshot.lineage.feedback.labelled == 0
    assert not (settings.home / "serving" / "predictions.db").exists()


# ------------------------------------------------------------------------------------------- the CLI
def _tagops(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    from tagops.cli import main

    monkeypatch.setattr(sys, "argv", ["tagops", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.mark.usefixtures("restore_process_state")
def test_cli_build_snapshots_and_diff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = make_sources()
    first_dir = sources.write(tmp_path / "a")
    code, out, err = _tagops(
        monkeypatch, capsys, "data", "build", "--source-dir", str(first_dir), "--no-feedback", "--json"
    )
    assert code == 0, err
    first = json.loads(out)
    assert first["created"] and first["rows"]["training_set"] == 12 and first["seconds"] > 0
    code, out, _ = _tagops(
        monkeypatch, capsys, "data", "build", "--source-dir", str(first_dir), "--no-feedback"
    )
    assert code == 0
    assert (
        out.startswith(f"snapshot {first['snapshot_id']} (unchanged")
        and "training_set" in out
        and "built in" in out
    )
    _relabel_dataset(sources)
    sources.tags.loc[4, "tag"] = sources.dataset.loc[4, "tag"]
    code, out, _ = _tagops(
        monkeypatch,
        capsys,
        "data",
        "build",
        "--source-dir",
        str(sources.write(tmp_path / "b")),
        "--no-feedback",
        "--json",
    )
    second = json.loads(out)["snapshot_id"]
    code, out, _ = _tagops(monkeypatch, capsys, "data", "snapshots", "--json")
    assert [s["snapshot_id"] for s in json.loads(out)] == [first["snapshot_id"], second]
    code, out, _ = _tagops(monkeypatch, capsys, "data", "snapshots")
    assert first["snapshot_id"] in out and second in out
    code, out, _ = _tagops(monkeypatch, capsys, "data", "diff", first["snapshot_id"], second, "--json")
    assert code == 0 and json.loads(out)["tables"]["training_set"]["relabelled"] == 1
    code, out, _ = _tagops(monkeypatch, capsys, "data", "diff", first["snapshot_id"], second)
    assert code == 0 and "relabelled" in out and "id 5" in out


@pytest.mark.usefixtures("restore_process_state")
def test_cli_build_of_bad_sources_prints_each_problem_and_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sources = make_sources()
    _duplicate_id(sources)
    code, out, err = _tagops(
        monkeypatch, capsys, "data", "build", "--source-dir", str(sources.write(tmp_path / "s"))
    )
    assert code == 1 and out == ""
    assert "error: table raw_projects: 1 data test failed" in err
    assert "error: table raw_projects (projects.csv), row 4, column 'id': unique: is a duplicate" in err


# ------------------------------------------------------------------------------- training from a snapshot
def test_a_snapshot_exports_as_byte_identical_data_files(tmp_path: Path) -> None:
    from tagops.data.validate import load_projects
    from tagops.warehouse.training import export_snapshot

    snapshot = build(tmp_path / "src")
    first = export_snapshot(Settings(), snapshot.snapshot_id[:8])
    assert first.snapshot_id == snapshot.snapshot_id
    assert first.dataset_sha256 == sha256_file(first.dataset_path)
    assert first.holdout_sha256 == sha256_file(first.holdout_path)
    training, holdout, _ = load_snapshot(Settings(), snapshot.snapshot_id)
    pd.testing.assert_frame_equal(load_projects(first.dataset_path), training, check_dtype=False)
    pd.testing.assert_frame_equal(load_projects(first.holdout_path), holdout, check_dtype=False)
    lineage = json.loads((first.dataset_path.parent / "lineage.json").read_text(encoding="utf-8"))
    assert lineage == json.loads((snapshot.path / "lineage.json").read_text(encoding="utf-8"))
    written = first.dataset_path.stat().st_mtime_ns
    again = export_snapshot(Settings(), "latest")
    assert again == first and first.dataset_path.stat().st_mtime_ns == written  # not rewritten


def test_an_edited_export_is_rendered_again_from_the_snapshot(tmp_path: Path) -> None:
    from tagops.warehouse.training import export_snapshot

    snapshot = build(tmp_path / "src")
    first = export_snapshot(Settings(), snapshot.snapshot_id)
    original = first.dataset_path.read_bytes()
    first.dataset_path.write_bytes(original.replace(b"computer-vision", b"mlops", 1))
    assert first.dataset_path.read_bytes() != original
    again = export_snapshot(Settings(), snapshot.snapshot_id)
    assert again.dataset_path.read_bytes() == original and again.dataset_sha256 == first.dataset_sha256


def test_data_stage_builds_or_names_a_snapshot_and_otherwise_reads_the_files(tmp_path: Path) -> None:
    from tagops.config import DataConfig
    from tagops.data.stages import DataSnapshot
    from tagops.warehouse.training import data_stage

    folder = make_sources().write(tmp_path / "src")
    files = data_stage(Settings(), DataConfig(source_dir=folder))
    assert files.snapshot_id is None and files.dataset_path == folder / "dataset.csv"
    built = data_stage(Settings(), DataConfig(source_dir=folder, snapshot="build", snapshot_feedback=False))
    assert built.snapshot_id is not None and built.dataset_path.parent.name == built.snapshot_id
    named = data_stage(Settings(), DataConfig(snapshot=built.snapshot_id[:6]))
    assert named == built
    assert DataSnapshot.from_json(built.to_json()) == built
    with pytest.raises(TagopsError, match="no snapshot 'abc123'"):
        data_stage(Settings(), DataConfig(snapshot="abc123"))


def test_a_snapshot_reference_is_checked_by_the_config() -> None:
    from pydantic import ValidationError

    from tagops.config import DataConfig

    assert DataConfig(snapshot="latest").snapshot == "latest"
    for bad in ("", "../etc", "a b", "id;drop"):
        with pytest.raises(ValidationError, match="snapshot"):
            DataConfig(snapshot=bad)
