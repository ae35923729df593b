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


#: One machine's promotion of ``version`` against the team server, with its own TAGOPS_HOME (its own
#: history file and file lock). The holdout evaluation is a fixed report; both contenders finish it
#: before either records anything (a barrier of files), so both gates compare with champion 1.
CONTENDER = """
import json, sys, time
from pathlib import Path
from tagops.config import EvalConfig
from tagops.registry.client import Registry
from tagops.settings import Settings, prepare_environment
from tagops.workloads import promote as steps
from tests.unit.test_gate import GATE, report

version, barrier = int(sys.argv[1]), Path(sys.argv[2])
settings = Settings()
prepare_environment(settings)
registry = Registry(settings)

def evaluate(registry, evaluated, holdout, cfg):
    if evaluated != 1:
        (barrier / str(version)).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    return report(0.78 if evaluated == 1 else 0.90)

steps._evaluate_version = evaluate
history, cfg, gate = settings.promotion_history, EvalConfig(), GATE.model_copy(update={"behaviour": ()})
decision = steps.promote(registry, holdout=None, eval_cfg=cfg, gate=gate, history=history, version=version)
print(json.dumps({"promote": decision.promote, "reason": decision.reason}))
"""


@pytest.fixture(scope="module")
def contested(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Versions 1 to 3 of the model on the team server (their files do not matter here)."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("contested")
    with isolated_home(root / "setup", seed_mlflow=False), pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        from tagops.registry.client import Registry
        from tagops.settings import Settings

        registry = Registry(Settings())  # the experiment, before two processes race to create it
        client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
        client.create_registered_model("contest")
        run = client.create_run(registry.experiment_id)
        for number in (1, 2, 3):
            client.log_text(run.info.run_id, "stand-in", f"m{number}/MLmodel")
            client.create_model_version(
                "contest", source=f"{run.info.artifact_uri}/m{number}", run_id=run.info.run_id
            )
        yield {"client": client, "root": root}


@pytest.mark.parametrize("run", range(20))
def test_two_machines_promoting_through_one_server_leave_one_champion(
    mlflow_server: str, contested: dict[str, object], run: int
) -> None:
    client, root = contested["client"], contested["root"]
    assert isinstance(root, Path)
    client.set_registered_model_alias("contest", "champion", "1")  # type: ignore[attr-defined]
    barrier = root / f"barrier-{run}"
    barrier.mkdir()
    contenders = {}
    for version in (2, 3):
        home = root / f"run-{run}-machine-{version}"
        env = {
            **os.environ,
            "TAGOPS_HOME": str(home),
            "ZENML_CONFIG_PATH": str(home / "zenml"),
            "MLFLOW_TRACKING_URI": mlflow_server,
            "TAGOPS_REGISTERED_MODEL": "contest",
        }
        contenders[version] = subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(version), str(barrier)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    outcomes = {}
    for version, proc in contenders.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        outcomes[version] = json.loads(out.strip().splitlines()[-1])
    winners = [v for v, o in outcomes.items() if o["promote"]]
    assert len(winners) == 1, outcomes
    (loser,) = {2, 3} - set(winners)
    assert "champion moved from version 1" in outcomes[loser]["reason"], outcomes
    champion = client.get_model_version_by_alias("contest", "champion").version  # type: ignore[attr-defined]
    assert int(champion) == winners[0]
    assert not client.search_registered_models(filter_string="name = 'contest.lease.promotion'")  # type: ignore[attr-defined]
