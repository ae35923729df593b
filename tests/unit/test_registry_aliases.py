"""Reading an alias without MLflow: MLflow's SQLite layout, a tracking server's REST answer, else MLflow."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from tagops.registry.aliases import alias_version

pytestmark = pytest.mark.unit


def store(path: Path, rows: list[tuple[str, int, str, str]]) -> str:
    with sqlite3.connect(path) as db:  # the columns MLflow 3 keeps aliases in
        db.execute(
            "CREATE TABLE registered_model_aliases (alias VARCHAR(256) NOT NULL, version INTEGER NOT NULL,"
            " name VARCHAR(256) NOT NULL, workspace VARCHAR(63) DEFAULT 'default' NOT NULL)"
        )
        db.executemany("INSERT INTO registered_model_aliases VALUES (?, ?, ?, ?)", rows)
    return f"sqlite:///{path}"


def test_an_alias_is_read_from_the_sqlite_store(tmp_path: Path) -> None:
    uri = store(
        tmp_path / "mlflow.db", [("champion", 4, "tagops", "default"), ("challenger", 5, "tagops", "default")]
    )
    assert alias_version(uri, "tagops", "champion") == 4
    assert alias_version(uri, "tagops", "challenger") == 5
    assert alias_version(uri, "tagops", "nope") is None
    assert alias_version(uri, "other", "champion") is None


def test_mlflow_decides_what_cannot_be_read_plainly(tmp_path: Path) -> None:
    two = store(tmp_path / "two.db", [("champion", 1, "tagops", "a"), ("champion", 2, "tagops", "b")])
    assert alias_version(two, "tagops", "champion") is None  # one per workspace: not ours to pick
    assert alias_version(f"sqlite:///{tmp_path / 'missing.db'}", "tagops", "champion") is None
    assert not (tmp_path / "missing.db").exists()  # read-only: nothing created
    (tmp_path / "empty.db").touch()
    assert alias_version(f"sqlite:///{tmp_path / 'empty.db'}", "tagops", "champion") is None  # no table
    assert alias_version("postgresql://db/mlflow", "tagops", "champion") is None
    assert alias_version("databricks", "tagops", "champion") is None


def test_a_tracking_server_is_asked_over_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict[str, Any]] = []

    def get(url: str, **kwargs: Any) -> httpx.Response:
        asked.append({"url": url, **kwargs})
        if "alias=champion" in url:
            return httpx.Response(200, json={"model_version": {"name": "tagops", "version": "7"}})
        return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST"})

    monkeypatch.setattr(httpx, "get", get)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "t0ken")
    assert alias_version("https://mlflow.example.com/", "tagops", "champion") == 7
    assert asked[0]["url"] == (
        "https://mlflow.example.com/api/2.0/mlflow/registered-models/alias?name=tagops&alias=champion"
    )
    assert asked[0]["headers"] == {"Authorization": "Bearer t0ken"}
    assert alias_version("https://mlflow.example.com", "tagops", "gone") is None

    def down(url: str, **kwargs: Any) -> httpx.Response:
        raise httpx.ConnectError("refused")

    monkeypatch.setattr(httpx, "get", down)
    assert alias_version("http://127.0.0.1:1", "tagops", "champion") is None
