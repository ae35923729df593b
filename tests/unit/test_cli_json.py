"""`--json` for scripts: where a command prints a table or a line, stdout becomes one JSON document."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tagops.cli import app

from .conftest import fit_rules_model, make_projects, write_csv

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("restore_process_state", "tagops_home")]

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fit_rules_model(tmp_path_factory.mktemp("json-model") / "rules")


def run_json(*args: str) -> object:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # the whole of stdout is one document


def test_predict_a_file(model_dir: Path, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", make_projects(2).drop(columns=["tag"]))
    output = tmp_path / "out.jsonl"
    shown = run_json("predict", "--input", str(source), "--output", str(output), "--model", str(model_dir))
    assert shown == {"input": str(source), "output": str(output), "predictions": 8, "engine": "local"}
    assert len(output.read_text().splitlines()) == 8


def test_evaluate(model_dir: Path, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "holdout.csv", make_projects(3, start_id=900, offset=40))
    output = tmp_path / "eval.json"
    shown = run_json(
        "evaluate",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--output",
        str(output),
        "--no-log-to-mlflow",
    )
    assert isinstance(shown, dict)
    report = json.loads(output.read_text())
    assert shown["overall"] == report["overall"] and shown["report"] == str(output)
    assert shown["ece"] == report["calibration"]["ece"] and shown["robustness"] is None
    assert str(output) in shown["files"] and all(Path(f).is_file() for f in shown["files"])


def test_keys_create_list_revoke() -> None:
    created = run_json("keys", "create", "--name", "ci bot", "--role", "labeller")
    assert isinstance(created, dict)
    assert created["token"].startswith("tagops_") and created["role"] == "labeller"
    assert created["revoked_at"] is None
    listed = run_json("keys", "list")
    assert listed == [{k: v for k, v in created.items() if k != "token"}]
    revoked = run_json("keys", "revoke", created["key_id"])
    assert isinstance(revoked, dict) and revoked["revoked_at"] is not None


def test_log_replay_with_nothing_left() -> None:
    shown = run_json("log-replay")
    assert isinstance(shown, dict)
    assert (shown["predictions"], shown["shadow_predictions"], shown["held_segments"]) == (0, 0, 0)
    assert shown["database"].startswith("sqlite")


def test_serve_prints_its_ray_serve_config_as_json() -> None:
    shown = run_json("serve", "--print-serve-config", "--replicas", "3", "--log-format", "json")
    assert isinstance(shown, dict)
    (application,) = shown["applications"]
    assert application["args"]["config"]["log_format"] == "json"
    assert application["deployments"][0]["num_replicas"] == 3
    assert application["deployments"][0]["logging_config"]["encoding"] == "JSON"


def test_serve_refuses_an_unknown_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGOPS_LOG_FORMAT", "xml")
    result = runner.invoke(app, ["serve", "--print-serve-config"])
    assert result.exit_code == 2
    assert "log_format" in result.output


def test_team_env(tagops_home: Path) -> None:
    folder = tagops_home / "team"
    folder.mkdir(parents=True)
    (folder / "env").write_text(
        "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000\n"
        "export TAGOPS_SERVE_DATABASE_URL=postgresql+psycopg://u@h/tagops_log\n"
    )
    assert run_json("team", "env") == {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
        "TAGOPS_SERVE_DATABASE_URL": "postgresql+psycopg://u@h/tagops_log",
    }
    assert run_json("team", "down") == {"stopped": None}
