"""`tagops serve --engine uvicorn` end to end: starts on loopback, prints its URL, answers, and flushes
the prediction log on SIGTERM; start-up problems are one-line errors.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tagops.config import DataConfig, LinearParams, TrainConfig
from tagops.settings import QUIET_ENVIRONMENT, Settings

pytestmark = pytest.mark.integration

SERVE = [sys.executable, "-m", "tagops.cli", "serve", "--engine", "uvicorn"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Path:
    from tagops.workloads.train import run_training

    home = tmp_path_factory.mktemp("serve-cli-model")
    settings = Settings(home=home)
    cfg = TrainConfig(data=DataConfig(source_dir=fixture_dir), model=LinearParams())
    return run_training(cfg, settings, registry=None).model_dir


def environment(home: Path) -> dict[str, str]:
    env = {**os.environ, **QUIET_ENVIRONMENT, "TAGOPS_HOME": str(home), "COLUMNS": "200"}
    for key in (
        "MLFLOW_TRACKING_URI",
        "TAGOPS_MLFLOW_TRACKING_URI",
        "RAY_ADDRESS",
        "TAGOPS_SERVE_DATABASE_URL",
    ):
        env.pop(key, None)
    return env


def start_server(home: Path, model_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """``tagops serve --engine uvicorn`` on a free loopback port, once it printed its URL."""
    proc = subprocess.Popen(
        [*SERVE, "--port", "0", "--model", str(model_dir), *extra],
        env=environment(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server prints its URL (or exits)
    if not line.startswith("serving "):
        if proc.poll() is None:
            proc.kill()
        pytest.fail(line + (proc.stderr.read() if proc.stderr is not None else ""))
    return proc, line.split(" at ")[1].split(" ")[0]


@pytest.fixture
def server(tmp_path: Path, model_dir: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    home = tmp_path / "home"
    proc, url = start_server(home, model_dir)
    try:
        yield proc, url, home
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def test_serves_on_loopback_and_flushes_the_log_on_sigterm(
    server: tuple[subprocess.Popen[str], str, Path],
) -> None:
    proc, url, home = server
    assert url.startswith("http://127.0.0.1:")
    with httpx.Client(timeout=30) as http:
        assert http.get(f"{url}/readyz").status_code == 200
        response = http.post(
            f"{url}/v1/predict",
            json={
                "items": [{"title": "Semantic segmentation of images"}, {"title": "Kubernetes model serving"}]
            },
        )
        assert response.status_code == 200, response.text
        assert [p["tag"] for p in response.json()["predictions"]] == ["computer-vision", "mlops"]
        model = http.get(f"{url}/v1/model").json()
        assert model["family"] == "linear" and model["version"] is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert proc.stderr is not None
    chosen = [line for line in proc.stderr.read().splitlines() if line.lstrip().startswith("model: ")]
    # Chosen for the linear model (the config sets none of them); num_cpus is Ray Serve's only.
    assert [line.split("=")[0].split()[-1] for line in chosen] == ["batch_hold_fraction", "predict_in_thread"]
    assert "batch_hold_fraction=0.0 (linear model:" in chosen[0]
    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog

    store = PredictionLog(default_database_url(Settings(home=home)))
    assert store.reader.count_predictions() == 2
    journal = home / "serving" / "journal"
    assert journal.is_dir(), "the rows were journaled"
    assert [path.name for path in journal.rglob("*") if path.is_file()] == []  # all settled, none left


def test_a_killed_servers_rows_are_written_by_the_next_one(tmp_path: Path, model_dir: Path) -> None:
    # A 30 s flush interval keeps the rows in the writer's memory when SIGKILL comes: only the journal
    # has them. The next server on the same home writes them when it starts.
    home = tmp_path / "home"
    config = tmp_path / "serve.yaml"
    config.write_text("log_flush_interval_s: 30\n")
    proc, url = start_server(home, model_dir, "--config", str(config))
    try:
        with httpx.Client(timeout=30) as http:
            answered = [
                prediction["prediction_id"]
                for index in range(5)
                for prediction in http.post(
                    f"{url}/v1/predict", json={"items": [{"title": f"Object detection {index}"}]}
                ).json()["predictions"]
            ]
    finally:
        proc.kill()
        proc.wait(30)
    assert len(answered) == 5
    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog

    store = PredictionLog(default_database_url(Settings(home=home)))
    store.create_tables()
    assert store.reader.count_predictions() == 0  # the killed server never committed them

    proc, url = start_server(home, model_dir)
    try:
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{url}/readyz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(store.reader.prediction_exists(prediction_id) for prediction_id in answered)
    assert store.reader.count_predictions() == 5


def test_start_up_problems_are_one_line_errors(tmp_path: Path, model_dir: Path) -> None:
    env = environment(tmp_path / "home")
    missing = subprocess.run(
        SERVE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 1
    assert "error: models:/tagops@champion: no version has the alias 'champion'" in missing.stderr
    assert "Traceback" not in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [*SERVE, "--port", str(port), "--model", str(model_dir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert busy.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}" in busy.stderr


@pytest.mark.parametrize("target", ["process", "group"])
def test_a_ray_server_stopped_while_it_starts_shuts_down_cleanly(model_dir: Path, target: str) -> None:
    # A supervisor may stop a server during its start (Serve's controller, proxy and replicas take
    # seconds): the start completes, Serve and the embedded cluster shut down, and the command exits 0
    # instead of Ray's signal handler aborting the driver and leaving the cluster's processes behind.
    # Signalled to its process group (`kill -TERM -PGID`), only the server gets it: the cluster's node
    # processes run in a session of their own, so they are stopped in order, not killed under it.
    import psutil

    from tagops.serving.server import free_port
    from tests.integration.test_ray_train import short_home

    with short_home() as home:
        proc = subprocess.Popen(
            [*SERVE[:-2], "--engine", "ray", "--port", str(free_port()), "--model", str(model_dir)],
            env=environment(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, to signal as a supervisor would
        )
        try:
            assert proc.stderr is not None and proc.stdout is not None
            # The settings are chosen once the cluster is up, just before Serve starts.
            for line in proc.stderr:
                if line.strip().startswith("model: predict_in_thread="):
                    break
            else:
                pytest.fail(f"no settings printed; exit code {proc.wait(30)}")
            children = proc_children(proc.pid)
            began = time.monotonic()
            if target == "group":
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
            assert proc.wait(120) == 0, proc.stderr.read()[-3000:]
            stopped_s = time.monotonic() - began
            assert "serving " not in proc.stdout.read()  # stopped before it said it was ready
            _, alive = psutil.wait_procs(children, timeout=30)
            assert [p.pid for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []
            # The start it let finish plus the stop: nothing waited on a peer the signal had killed.
            assert stopped_s < 60, stopped_s
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


def proc_children(pid: int) -> list[Any]:
    import psutil

    return psutil.Process(pid).children(recursive=True)
