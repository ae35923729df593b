"""Training against a 2-node Ray cluster on loopback: `ray start --head` + `ray start --address`.

Each node offers one CPU, and the run asks for two workers of one CPU each, so DDP spans both nodes.
The nodes are started with `ray start --block` in their own process groups and stopped by signalling
those groups (never `ray stop`, which would stop every Ray cluster on the machine). Slow (about
2 minutes on 2 CPUs): runs only with TAGOPS_RUN_SLOW=1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tagops.serving.server import free_port
from tests.conftest import FOREIGN_SERVERS
from tests.integration.helpers import isolated_home, run_cli
from tests.integration.test_ray_train import FIXTURE_WORDS, short_home, tiny_config
from tests.tiny_encoder import write_tiny_encoder

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("TAGOPS_RUN_SLOW") != "1", reason="slow: set TAGOPS_RUN_SLOW=1"),
]

RAY = str(Path(sys.executable).parent / "ray")
# Ray rewrites 127.0.0.1 ("this host") to the machine's routable address once multi-node clusters are
# enabled, and refuses a second node when they are not; 127.0.0.2 is loopback too and is left alone.
LOOPBACK = "127.0.0.2"
NODE_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
}


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on the loopback address the nodes use."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(LOOPBACK)
        if port not in ports:
            ports.append(port)
    return ports


def start_node(*args: str, log: Path) -> subprocess.Popen[bytes]:
    # Both nodes share one address, so each gets its own free ports for what would otherwise take a fixed
    # default (the dashboard agent's 52365 on every node). This interpreter's folder comes first on PATH:
    # Ray Jobs run their entrypoint (`python -m tagops.cli ...`) with the nodes' PATH, as a cluster image
    # puts its Python first.
    # A node takes none of this process's tagops settings or MLflow servers (a team's nodes have their
    # own): a job gets them from its submitter or not at all.
    agent, agent_grpc, runtime_env_agent, metrics = free_ports(4)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("TAGOPS_") and key not in FOREIGN_SERVERS
    }
    with log.open("wb") as handle:
        return subprocess.Popen(
            [RAY, "start", "--block", "--node-ip-address", LOOPBACK, "--num-cpus", "1",
             "--num-gpus", "0", "--object-store-memory", str(100 * 1024**2), "--disable-usage-stats",
             "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
             "--runtime-env-agent-port", str(runtime_env_agent), "--metrics-export-port", str(metrics),
             *args],
            env={**inherited, **NODE_ENV, "PATH": path},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def stop_node(node: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        if node.poll() is not None:
            break
        try:
            os.killpg(node.pid, sig)
            node.wait(timeout=wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue
    with contextlib.suppress(ProcessLookupError):  # daemons that outlived `ray start` share its group
        os.killpg(node.pid, signal.SIGKILL)


NODES_PROBE = """
import json, ray
ray.init(address="{address}", logging_level="ERROR", log_to_driver=False)
alive = sum(n["Alive"] for n in ray.nodes())
print(json.dumps({{"nodes": alive, "cpus": ray.cluster_resources().get("CPU", 0)}}))
ray.shutdown()
"""


def wait_for_nodes(address: str, count: int, timeout: float) -> None:
    """Poll the cluster from a fresh interpreter (as a user's driver would connect) until it has ``count``."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            probe = subprocess.run(
                [sys.executable, "-c", NODES_PROBE.format(address=address)],
                env={**os.environ, **NODE_ENV},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if probe.returncode == 0:
                seen = json.loads(probe.stdout.strip().splitlines()[-1])
                if seen["nodes"] >= count and seen["cpus"] >= count:
                    return
        except subprocess.TimeoutExpired:
            pass
        time.sleep(1)
    raise AssertionError(f"the cluster at {address} did not reach {count} nodes in {timeout}s (saw {seen})")


def wait_for_job_api(url: str, timeout: float) -> None:
    """Poll the dashboard's job API (it starts after the head node is up) until it answers."""
    import httpx

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/api/version", timeout=5)
            if answer.status_code == 200:
                return
            last = answer.status_code
        except httpx.HTTPError as error:
            last = error
        time.sleep(1)
    raise AssertionError(f"the Ray job API at {url} did not answer in {timeout}s (last: {last})")


@contextmanager
def loopback_cluster(logs: Path, *, dashboard_port: int | None = None) -> Iterator[str]:
    """A head and a worker node of one CPU each on 127.0.0.2; yields the cluster (GCS) address.

    With ``dashboard_port``, the head runs the dashboard there (the Ray Jobs API and ``serve deploy``
    talk to it: ``http://127.0.0.2:<dashboard_port>``) and the block starts once it answers.
    """
    # Ray's socket paths must stay under ~107 characters: a short temp dir, not pytest's tmp_path.
    temp_dir = tempfile.mkdtemp(prefix="tgray-", dir="/tmp")
    port, client_port = free_ports(2)
    address = f"{LOOPBACK}:{port}"
    if dashboard_port is None:
        dashboard = ["--include-dashboard", "false"]
    else:
        dashboard = ["--include-dashboard", "true", "--dashboard-host", LOOPBACK,
                     "--dashboard-port", str(dashboard_port)]  # fmt: skip
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        nodes.append(
            start_node("--head", "--port", str(port), "--ray-client-server-port", str(client_port),
                       *dashboard, "--temp-dir", temp_dir, log=logs / "head.log")
        )  # fmt: skip
        wait_for_nodes(address, 1, timeout=120)
        nodes.append(start_node("--address", address, log=logs / "worker.log"))
        wait_for_nodes(address, 2, timeout=120)
        if dashboard_port is not None:
            wait_for_job_api(f"http://{LOOPBACK}:{dashboard_port}", timeout=120)
        yield address
    finally:
        for node in reversed(nodes):
            stop_node(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ddp_training_spans_a_two_node_loopback_cluster(tmp_path: Path) -> None:
    from tagops.models import load_model, read_model_info

    encoder = write_tiny_encoder(tmp_path / "tiny-bert", extra_words=FIXTURE_WORDS)
    config_path = tmp_path / "train.yaml"
    cfg = tiny_config(encoder, num_workers=2, cpus_per_worker=1, epochs=2)
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    with loopback_cluster(tmp_path) as address, short_home() as home, isolated_home(home) as settings:
        # The CLI, as a user runs it: RAY_ADDRESS makes it join the cluster instead of starting one.
        result = run_cli(
            "train",
            "--config",
            config_path,
            "--no-register",
            env={"RAY_ADDRESS": address, **NODE_ENV},
            timeout=900,
            fresh_process=True,
        )
        assert result.returncode == 0, result.explain()
        model_dir = Path(json.loads(result.stdout)["model_dir"])
        training = read_model_info(model_dir)["training"]
        # two 1-CPU workers on a cluster of two 1-CPU nodes: one worker per node
        assert training["workers"] == 2
        assert training["epoch"] == 2
        assert load_model(model_dir).predict_proba(["Docker deployment"]).shape == (1, 4)
        assert not (settings.home / "ray").exists()  # joined the cluster; no embedded one was started
