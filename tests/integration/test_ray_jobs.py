"""Ray Jobs and `serve deploy` on a 2-node loopback cluster with its dashboard, as a user runs them.

`tagops submit train --config train.yaml` ships the local config and this tagops package to the cluster
and runs the training there; the job registers a challenger in the home the test shares with the cluster
(same machine, same files: TAGOPS_HOME is passed to the job). A job that fails exits non-zero with its
error. Then `serve deploy` puts the Serve config rendered from deploy/serve-config.yaml, pointed at the
registered version, on the same cluster, and the API answers a prediction. Slow (a few minutes on 2
CPUs): runs only with TAGOPS_RUN_SLOW=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tagops import LABELS
from tagops.serving.server import free_port
from tagops.settings import Settings
from tests.integration.helpers import CliResult, isolated_home, registry_counts, run_cli
from tests.integration.test_ray_cluster import LOOPBACK, NODE_ENV, loopback_cluster
from tests.integration.test_ray_train import FIXTURES, short_home

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("TAGOPS_RUN_SLOW") != "1", reason="slow: set TAGOPS_RUN_SLOW=1"),
]

ROOT = Path(__file__).resolve().parents[2]
SERVE = str(Path(sys.executable).parent / "serve")
#: The cheapest family that registers a real model: seconds to train on the fixtures.
TRAIN_CONFIG = {
    "model": {"family": "linear"},
    "data": {"source_dir": str(FIXTURES)},
    "evaluation": {"bootstrap_samples": 50},
    "seed": 3,
}


@dataclass(frozen=True)
class Cluster:
    """The running cluster, the home it shares with the test, and the folder commands run in."""

    dashboard: str
    settings: Settings
    workdir: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("ray-jobs")
    workdir = folder / "project"
    workdir.mkdir()
    (workdir / "train.yaml").write_text(yaml.safe_dump(TRAIN_CONFIG))
    port = free_port(LOOPBACK)
    # The nodes start before the home exists: the job gets TAGOPS_HOME from the submitter, not from them.
    with (
        loopback_cluster(folder, dashboard_port=port),
        short_home() as home,
        isolated_home(home) as settings,
    ):
        yield Cluster(f"http://{LOOPBACK}:{port}", settings, workdir)


def submit(cluster: Cluster, *args: str, env: dict[str, str] | None = None) -> CliResult:
    """`tagops submit ARGS --address <the dashboard>` in a new interpreter, from the project folder."""
    return run_cli(
        "submit", *args, "--address", cluster.dashboard,
        env={**NODE_ENV, **(env or {})}, cwd=cluster.workdir, timeout=600, fresh_process=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(cluster: Cluster) -> CliResult:
    """The training job, submitted once (the config path is relative: it is shipped with the job).

    ``RAY_ADDRESS`` names a cluster that is not running (a user's exported one): ``--address`` still decides
    where the job goes (Ray's client would take RAY_ADDRESS over it), and the job does not get it (Ray sets
    its own, the cluster's).
    """
    env = {"RAY_ADDRESS": f"{LOOPBACK}:{free_port(LOOPBACK)}"}
    return submit(cluster, "train", "--config", "train.yaml", "--job-id", "train-linear", env=env)


def test_a_training_job_on_the_cluster_registers_a_challenger(cluster: Cluster, trained: CliResult) -> None:
    from ray.job_submission import JobSubmissionClient

    from tagops.registry.client import Registry

    assert trained.returncode == 0, trained.explain()
    assert json.loads(trained.stdout) == {
        "job_id": "train-linear",
        "status": "SUCCEEDED",
        "message": "Job finished successfully.",
    }
    # The job's own output, streamed to stderr: the training's progress and its JSON result.
    assert "fitted linear on" in trained.stderr, trained.explain()
    assert "registered tagops version 1 (alias challenger)" in trained.stderr
    assert '"holdout_f1"' in trained.stderr
    versions = Registry(cluster.settings).list_versions()
    assert [(v["version"], v["aliases"], v["tags"].get("family")) for v in versions] == [
        (1, ["challenger"], "linear")
    ]
    # What Ray ran: the shipped tagops package (uploaded to the cluster) with the submitter's settings.
    info = JobSubmissionClient(cluster.dashboard).get_job_info("train-linear")
    assert info.entrypoint == "python -m tagops.cli train --config train.yaml"
    (package,) = info.runtime_env["py_modules"]
    assert package.startswith("gcs://_ray_pkg_")
    assert info.runtime_env["env_vars"]["TAGOPS_HOME"] == str(cluster.settings.home)
    assert "RAY_ADDRESS" not in info.runtime_env["env_vars"]
    status = submit(cluster, "status", "train-linear")
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "SUCCEEDED", status.explain()


def test_a_failing_job_exits_non_zero_with_its_error(cluster: Cluster, trained: CliResult) -> None:
    before = registry_counts(cluster.settings)
    result = submit(cluster, "train", "--config", "missing.yaml", "--job-id", "train-missing")
    assert result.returncode == 1, result.explain()
    assert json.loads(result.stdout)["status"] == "FAILED"
    assert "missing.yaml: cannot read config" in result.stderr, result.explain()  # the job's own error
    # The job's command refuses the missing file as a usage error (status 2); submit itself exits 1.
    assert "error: job train-missing FAILED: Job entrypoint command failed with exit code 2" in result.stderr
    assert registry_counts(cluster.settings) == before


def render_serve_config(path: Path, *, model_uri: str, port: int, home: Path) -> None:
    """deploy/serve-config.yaml pointed at ``model_uri`` and ``home``, on 127.0.0.2:``port``, 1 replica."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "serve-config.yaml").read_text())
    config["http_options"].update(host=LOOPBACK, port=port)
    (application,) = config["applications"]
    application["args"]["config"].update(
        model_uri=model_uri,
        host=LOOPBACK,
        port=port,
        num_replicas=1,
        num_cpus=0.5,
        require_key_for_predict=False,
    )
    (deployment,) = application["deployments"]
    deployment["num_replicas"] = 1
    deployment["ray_actor_options"]["num_cpus"] = 0.5
    application["runtime_env"]["env_vars"]["TAGOPS_HOME"] = str(home)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_serve_deploy_serves_the_registered_model(
    cluster: Cluster, trained: CliResult, tmp_path: Path
) -> None:
    assert trained.returncode == 0, "the training job did not register a model"
    port = free_port(LOOPBACK)
    config = tmp_path / "serve-config.yaml"
    render_serve_config(config, model_uri="models:/tagops/1", port=port, home=cluster.settings.home)
    env = {**os.environ, **NODE_ENV}
    deploy = subprocess.run(
        [SERVE, "deploy", str(config), "--address", cluster.dashboard],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert deploy.returncode == 0, deploy.stderr
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline, ready = time.monotonic() + 240, None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        if ready is None or ready.status_code != 200:
            status = subprocess.run(
                [SERVE, "status", "--address", cluster.dashboard],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            pytest.fail(f"{url}/readyz did not answer 200 in 240 s; serve status:\n{status.stdout}")
        item = {"title": "Docker deployment of models", "description": "kubernetes serving in production"}
        answer = httpx.post(f"{url}/v1/predict", json={"items": [item]}, timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"]["version"] == 1 and body["model"]["family"] == "linear"
        (prediction,) = body["predictions"]
        assert prediction["tag"] in LABELS
        assert set(prediction["probabilities"]) == set(LABELS)
    finally:  # replicas stop (and flush the prediction log) before the nodes are stopped
        subprocess.run(
            [SERVE, "shutdown", "--yes", "--address", cluster.dashboard],
            env=env, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
