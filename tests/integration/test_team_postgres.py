"""The loop on the team stack: `tagops team up` (MLflow on PostgreSQL, the prediction log on PostgreSQL),
then train → register → promote → serve → trusted feedback → `retrain --if-needed` (gate, promote,
reload), with the rows counted in PostgreSQL and the champion read back from the team's MLflow.

The stack gets two databases of its own on the local PostgreSQL, dropped afterwards. Without a server the
test is skipped, except in CI, where it fails.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.integration.helpers import isolated_home, predict_frame, run_cli, serving, train_linear_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER = "postgresql://root@127.0.0.1:5432/postgres"


def _postgres_or_skip() -> None:
    import psycopg

    try:
        psycopg.connect(SERVER, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL at {SERVER} in CI: {error}")
        pytest.skip(f"no PostgreSQL at {SERVER}: {error}")


def test_the_loop_runs_on_the_team_stack(tmp_path: Path, fixture_dir: Path) -> None:
    import psycopg

    _postgres_or_skip()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    with isolated_home(tmp_path / "home", seed_mlflow=False), pytest.MonkeyPatch.context() as mp:
        up = run_cli("team", "up", "--postgres", SERVER, "--prefix", prefix, "--port", "0")
        try:
            assert up.returncode == 0, up.explain()
            team = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines())
            assert set(team) == {"MLFLOW_TRACKING_URI", "TAGOPS_SERVE_DATABASE_URL"}
            for key, value in team.items():
                mp.setenv(key, value)
            _loop(tmp_path, fixture_dir, team)
        finally:
            down = run_cli("team", "down")
            with psycopg.connect(SERVER, autocommit=True) as admin:
                for name in (f"{prefix}_mlflow", f"{prefix}_log"):
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        assert down.returncode == 0, down.explain()


def _loop(root: Path, fixture_dir: Path, team: dict[str, str]) -> None:
    from tagops.predlog.log import PredictionLog
    from tagops.predlog.schema import schema_revision
    from tagops.registry.aliases import alias_version
    from tagops.registry.client import Registry
    from tagops.serving.keys import KeyStore
    from tagops.settings import Settings
    from tagops.simulation.traffic import shifted_frame

    settings = Settings()
    assert settings.tracking_uri == team["MLFLOW_TRACKING_URI"]
    registry = Registry(settings)
    first_version = train_linear_champion(settings, fixture_dir, registry)
    log = PredictionLog(team["TAGOPS_SERVE_DATABASE_URL"])
    assert schema_revision(log.engine) == "0002"  # `team up` applied the migrations
    keys = KeyStore(log.engine)
    _, admin_key = keys.create("ops", "admin")
    _, labeller_key = keys.create("ann", "labeller")
    serve_yaml = root / "serve.yaml"
    serve_yaml.write_text("engine: uvicorn\nlog_flush_interval_s: 0.05\n", encoding="utf-8")
    with serving(serve_yaml) as url:
        dataset = pd.read_csv(fixture_dir / "dataset.csv", dtype=str, keep_default_na=False)
        shifted = shifted_frame(dataset)
        with httpx.Client(base_url=url, timeout=60) as http:
            ids = predict_frame(http, shifted)
            for prediction_id, tag in zip(ids, shifted["tag"], strict=True):
                stored = http.post(
                    "/v1/feedback",
                    json={"prediction_id": prediction_id, "tag": tag},
                    headers={"Authorization": f"Bearer {labeller_key}"},
                )
                assert stored.status_code == 201, stored.text
        config = root / "retrain.yaml"
        config.write_text(
            f"train:\n  data: {{source_dir: {fixture_dir}}}\n"
            "gate: {max_overall_f1_drop: 0.1, max_class_f1_drop: 0.2, behaviour: []}\n"
            "policy: {trigger: on_alert, min_feedback_rows: 20}\n",
            encoding="utf-8",
        )
        alarm = root / "alarm.json"
        alarm.write_text(
            json.dumps(
                {
                    "alarm": True,
                    "drift_alarm": True,
                    "since": "2026-11-26T10:00:00+00:00",
                    "until": "2026-11-26T11:00:00+00:00",
                    "model_version": first_version,
                }
            )
        )
        result = run_cli(
            "retrain",
            "--if-needed",
            "--summary",
            alarm,
            "--config",
            config,
            env={"TAGOPS_RETRAIN_SERVICE_URL": url, "TAGOPS_RETRAIN_ADMIN_KEY": admin_key},
            timeout=600,
        )
        assert result.returncode == 0, result.explain()
        outcome = json.loads(result.stdout)
        assert outcome["counts"]["feedback"] == len(ids)
        assert outcome["promoted"] is True, outcome["gate"]
        challenger = outcome["challenger_version"]
        assert outcome["reload"]["current"]["version"] == challenger
        assert httpx.get(f"{url}/v1/model", timeout=30).json()["version"] == challenger
    # The rows are in PostgreSQL, and the champion in the team's MLflow (read as serving reads it).
    assert log.reader.count_predictions() == len(ids)
    assert len(log.reader.read_labelled()) == len(ids)
    assert alias_version(team["MLFLOW_TRACKING_URI"], "tagops", "champion") == challenger
    assert not (settings.home / "mlflow" / "mlflow.db").exists()
    log.dispose()
