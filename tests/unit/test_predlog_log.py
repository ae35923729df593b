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
    assert database_url_for("sqlite:///x.db", settings) == "postgresql://u:secret@db/tagops"
    assert "secret" not in safe_url("postgresql://u:secret@db/tagops")


def test_a_missing_database_driver_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tagops.errors import TagopsError

    def no_driver(*_: Any, **__: Any) -> Any:
        raise ModuleNotFoundError("No module named 'psycopg2'", name="psycopg2")

    monkeypatch.setattr("tagops.predlog.engine.create_engine", no_driver)
    with pytest.raises(
        TagopsError, match=r"u:\*\*\*@db/x: its database driver is not installed \(psycopg2\)"
    ):
        PredictionLog("postgresql://u:secret@db/x")
    monkeypatch.undo()
    with pytest.raises(TagopsError, match=r"nonsense://x: Can.t load plugin"):
        PredictionLog("nonsense://x")
