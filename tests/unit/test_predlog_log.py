"""Opening the prediction log: database URLs, engines, the constructor from config, feedback, reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tagops.predlog.engine import database_url_for, default_database_url, safe_url
from tagops.predlog.log import PredictionLog
from tests.unit.serving_fakes import settings_for
from tests.unit.test_predlog_writer import rows

pytestmark = pytest.mark.unit


def test_in_memory_and_default_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = PredictionLog("sqlite://")
    store = log.writer
    store.start()
    store.submit(rows(3))
    store.stop()
    assert log.reader.count_predictions() == 3
    settings = settings_for(tmp_path)
    assert default_database_url(settings) == f"sqlite:///{tmp_path.resolve() / 'serving' / 'predictions.db'}"
    assert database_url_for(None, settings) == default_database_url(settings)
    assert database_url_for("sqlite:///x.db", settings) == "sqlite:///x.db"
    monkeypatch.setenv("TAGOPS_SERVE_DATABASE_URL", "postgresql://u:secret@db/tagops")
    settings = settings_for(tmp_path)  # settings are read once, where the process starts
    assert database_url_for("sqlite:///x.db", settings) == "postgresql://u:secret@db/tagops"
    assert "secret" not in safe_url("postgresql://u:secret@db/tagops")


def test_a_database_url_that_is_not_one_is_named_by_where_it_was_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    from tagops.cli.context import read_config
    from tagops.config import RetrainConfig, ServeConfig
    from tagops.errors import TagopsError
    from tagops.settings import read_settings

    expected = "not a database URL (expected e.g. postgresql://user@host/db or sqlite:///path)"
    serve, loop = tmp_path / "serve.yaml", tmp_path / "loop.yaml"
    serve.write_text("database_url: u:s3cret@db\n")
    loop.write_text("retrain:\n  database_url: not a url\n")
    for kind, path, field in (
        (ServeConfig, serve, "field 'database_url'"),
        (RetrainConfig, loop, "section 'retrain', field 'database_url'"),
    ):
        with pytest.raises(typer.BadParameter) as info:  # when the file is read, before any work
            read_config(kind, path)
        assert info.value.message == f"{path}, {field}: {expected}"
        assert "s3cret" not in info.value.message
    monkeypatch.setenv("TAGOPS_SERVE_DATABASE_URL", "u:s3cret@db")
    with pytest.raises(TagopsError) as error:
        read_settings()
    assert str(error.value) == f"TAGOPS_SERVE_DATABASE_URL: {expected}"


def test_a_missing_database_driver_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tagops.errors import TagopsError

    def no_driver(*_: Any, **__: Any) -> Any:
        raise ModuleNotFoundError("No module named 'psycopg2'", name="psycopg2")

    monkeypatch.setattr("tagops.predlog.engine.create_engine", no_driver)
    with pytest.raises(
        TagopsError, match=r"u:\*\*\*@db/x: its database driver is not installed \(psycopg2\)"
    ):
        PredictionLog("postgresql+psycopg2://u:secret@db/x")
    monkeypatch.undo()
    with pytest.raises(TagopsError, match=r"nonsense://x: Can.t load plugin"):
        PredictionLog("nonsense://x")


def test_from_config_takes_the_writer_options_of_a_serving_config_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tagops.config import MonitorConfig, ServeConfig
    from tagops.predlog.engine import journal_folder

    monkeypatch.delenv("TAGOPS_SERVE_DATABASE_URL", raising=False)
    settings = settings_for(tmp_path)
    serve = ServeConfig(log_queue_rows=7, log_batch_rows=3, log_flush_interval_s=0.5, log_journal_max_mb=1.0)
    with PredictionLog.from_config(serve, settings) as log:
        assert log.url == default_database_url(settings)
        assert (log.writer.queue_rows, log.writer.batch_rows, log.writer.flush_interval_s) == (7, 3, 0.5)
        assert log.options.journal_dir == journal_folder(settings, log.url)
        assert log.writer.journal is not None and log.writer.journal.max_bytes == 1024 * 1024
        shadow = log.shadow_writer()
        assert shadow.table.name == "shadow_predictions" and shadow.engine is log.engine
        assert shadow.journal is not None and shadow.journal.folder == log.writer.journal.folder
    assert (
        PredictionLog.from_config(serve.model_copy(update={"log_journal": False}), settings).writer.journal
        is None
    )
    url = f"sqlite:///{tmp_path / 'other.db'}"
    with PredictionLog.from_config(MonitorConfig(database_url=url), settings) as log:
        assert log.url == url and log.options.journal_dir is None  # a reader: defaults, no journal
    with PredictionLog.from_config(None, settings, journal=True) as log:
        assert log.options.journal_dir == journal_folder(settings, default_database_url(settings))
    monkeypatch.setenv("TAGOPS_SERVE_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    settings = settings_for(tmp_path)  # settings are read once, where the process starts
    assert PredictionLog.from_config(MonitorConfig(database_url=url), settings).url.endswith("env.db")


def test_feedback_is_stored_at_once_and_read_back_for_its_prediction(tmp_path: Path) -> None:
    with PredictionLog(f"sqlite:///{tmp_path / 'log.db'}") as log:
        log.create_tables()
        batch = rows(2)
        log.writer.start()
        assert log.writer.submit(batch) and log.writer.flush(10)
        assert log.reader.prediction_exists(batch[0]["id"]) and not log.reader.prediction_exists("nope")
        first = log.add_feedback(prediction_id=batch[0]["id"], tag="nlp", key_id=None)
        log.add_feedback(prediction_id=batch[0]["id"], tag="cv", key_id="k")
        log.writer.stop()
        assert len(first) == 32
        labelled = log.reader.read_labelled()
        assert [r["feedback_tag"] for r in labelled] == ["nlp", "cv"]
        assert {r["prediction_id"] for r in labelled} == {batch[0]["id"]}


def test_only_trusted_labels_are_read_as_a_predictions_feedback(tmp_path: Path) -> None:
    from tagops.serving.keys import KeyStore
    from tagops.serving.state import ServingState

    with PredictionLog(f"sqlite:///{tmp_path / 'log.db'}") as log:
        log.create_tables()
        ServingState(log.engine).create_tables()
        keys = KeyStore(log.engine)
        labeller, _ = keys.create("labellers", "labeller")
        client, _ = keys.create("a user", "client")
        revoked, _ = keys.create("a former labeller", "labeller")
        batch = rows(4)
        log.writer.start()
        assert log.writer.submit(batch) and log.writer.flush(10)
        a, b, c, d = (row["id"] for row in batch)
        log.add_feedback(prediction_id=a, tag="nlp", key_id=labeller.key_id)
        log.add_feedback(prediction_id=a, tag="cv", key_id=labeller.key_id)  # the newest trusted counts
        log.add_feedback(prediction_id=a, tag="mlops", key_id=client.key_id)  # waiting: not counted
        log.add_feedback(prediction_id=b, tag="other", key_id=client.key_id)
        log.add_feedback(prediction_id=c, tag="other", key_id=None)  # a key the database does not know
        log.add_feedback(prediction_id=d, tag="nlp", key_id=revoked.key_id)
        keys.revoke(revoked.key_id)
        log.writer.stop()
        assert log.reader.read_trusted_feedback([a, b, c, d]) == {a: "cv"}


def test_the_sqlite_log_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    import stat

    database = tmp_path / "fresh" / "serving" / "predictions.db"
    log = PredictionLog(f"sqlite:///{database}")
    log.writer.start()
    log.writer.submit(rows(2))
    log.writer.stop()
    assert log.reader.count_predictions() == 2
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in database.parent.iterdir()}
    assert modes["predictions.db"] == 0o600
    assert all(mode == 0o600 for name, mode in modes.items() if name.startswith("predictions.db"))
    assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(database.parent.parent.stat().st_mode) == 0o700
    database.chmod(0o644)  # an older log: tightened when it is opened
    PredictionLog(f"sqlite:///{database}")
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
