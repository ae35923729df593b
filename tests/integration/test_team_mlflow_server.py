"""A team's MLflow server: with MLFLOW_TRACKING_URI set, runs and registry live there, not in TAGOPS_HOME."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.helpers import isolated_home, run_cli

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on loopback with its own SQLite store and artifact root, stopped afterwards."""
    root = tmp_path_factory.mktemp("team-mlflow")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'team.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(root / "server.log").open("w"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_training_and_promotion_use_the_team_server(
    mlflow_server: str, fixture_dir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    config = tmp_path / "train.yaml"
    config.write_text(f"data:\n  source_dir: {fixture_dir}\nmodel:\n  family: linear\n", encoding="utf-8")
    with isolated_home(home, seed_mlflow=False):
        env = {"MLFLOW_TRACKING_URI": mlflow_server}
        trained = run_cli("train", "--config", config, env=env)
        assert trained.returncode == 0, trained.explain()
        version = json.loads(trained.stdout)["version"]
        promoted = run_cli("promote", "--config", _pipeline_config(tmp_path, fixture_dir), env=env)
        assert promoted.returncode == 0, promoted.explain()
        assert "promoted" in promoted.stdout

    # The registry answers from the server: the champion is the version we trained...
    with urllib.request.urlopen(
        f"{mlflow_server}/api/2.0/mlflow/registered-models/alias?name=tagops&alias=champion", timeout=10
    ) as response:
        assert int(json.load(response)["model_version"]["version"]) == version
    # ...which is what serving reads at start without importing MLflow.
    from tagops.registry.aliases import alias_version

    assert alias_version(mlflow_server, "tagops", "champion") == version
    assert alias_version(mlflow_server, "tagops", "no-such-alias") is None
    # ...and nothing was tracked in the embedded store.
    assert not (home / "mlflow" / "mlflow.db").exists()


def _pipeline_config(tmp_path: Path, fixture_dir: Path) -> Path:
    path = tmp_path / "pipeline.yaml"
    # The fixtures do not teach the behavioural cases; where the registry lives is the subject here.
    path.write_text(f"data:\n  source_dir: {fixture_dir}\ngate:\n  behaviour: []\n", encoding="utf-8")
    return path
