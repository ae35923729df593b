"""The prediction API on Ray Serve over loopback: two replicas of a registered model, batching, keys,
reload of every replica, and the prediction log. One embedded Ray cluster and one Serve app per module.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tagops.config import DataConfig, LinearParams, RulesParams, ServeConfig, TrainConfig
from tagops.serving.server import free_port
from tagops.settings import QUIET_ENVIRONMENT, Settings, prepare_environment
from tests.conftest import FOREIGN_SERVERS
from tests.integration.helpers import seed_mlflow_store

pytestmark = pytest.mark.integration

ITEM = {
    "title": "Fine-tuning BERT for sentiment analysis",
    "description": "text classification with transformers",
}


@dataclass
class Served:
    url: str
    settings: Settings
    config: ServeConfig
    registry: Any
    versions: dict[str, int]
    admin: dict[str, str]
    client: dict[str, str]
    items_sent: list[int] = field(default_factory=list)

    def predict(self, http: httpx.Client, items: list[dict[str, str]]) -> httpx.Response:
        response = http.post(f"{self.url}/v1/predict", json={"items": items})
        if response.status_code == 200:
            self.items_sent.append(len(items))
        return response


@pytest.fixture(scope="module")
def served(fixture_dir: Path) -> Iterator[Served]:
    # Ray's socket paths must stay under 108 bytes: a short folder, not pytest's deep tmp_path.
    root = Path(tempfile.mkdtemp(prefix="tgs-"))
    try:
        yield from _serve_in(root / "home", fixture_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _serve_in(home: Path, fixture_dir: Path) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGOPS_HOME", str(home))
        for key, value in QUIET_ENVIRONMENT.items():
            mp.setenv(key, value)
        for key in FOREIGN_SERVERS:
            mp.delenv(key, raising=False)
        mp.delenv("TAGOPS_SERVE_DATABASE_URL", raising=False)
        settings = Settings()
        prepare_environment(settings)
        seed_mlflow_store(settings)
        from tagops.predlog.engine import default_database_url
        from tagops.predlog.log import PredictionLog
        from tagops.registry.client import CHAMPION, Registry
        from tagops.serving.keys import KeyStore
        from tagops.serving.state import ServingState
        from tagops.workloads.train import run_training

        registry = Registry(settings)
        data = DataConfig(source_dir=fixture_dir)
        versions = {
            family: run_training(TrainConfig(data=data, model=params), settings, registry=registry).version
            for family, params in (("linear", LinearParams()), ("rules", RulesParams()))
        }
        registry.set_alias(CHAMPION, versions["linear"])
        store = PredictionLog(default_database_url(settings))
        ServingState(store.engine).create_tables()
        keys = KeyStore(store.engine)
        admin = {"Authorization": f"Bearer {keys.create('admin', 'admin')[1]}"}
        client = {"X-API-Key": keys.create("client", "client")[1]}
        config = ServeConfig(
            port=free_port(), num_replicas=2, num_cpus=0.5, sync_interval_s=0.5, log_flush_interval_s=0.05
        )
        from ray import serve

        from tagops.runtime import ray_session
        from tagops.serving.ray.ingress import haproxy_folders, ray_serving_environment, release_haproxy
        from tagops.serving.ray.server import start_ray_serve

        for key, value in ray_serving_environment(config, settings).items():  # as `tagops serve` does
            mp.setenv(key, value)
        # Ray buffers 1,000 access-log records before writing them: write each at once, so that
        # test_replicas_write_no_access_log_by_default would see one.
        mp.setenv("RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE", "1")

        node_id = ""
        try:
            with ray_session(settings, num_cpus=2, lean=True):  # as `tagops serve` starts it
                import ray

                node_id = ray.get_runtime_context().get_node_id()
                try:
                    start_ray_serve(config)
                    yield Served(
                        f"http://127.0.0.1:{config.port}",
                        settings,
                        config,
                        registry,
                        {k: int(v or 0) for k, v in versions.items()},
                        admin,
                        client,
                    )
                finally:
                    serve.shutdown()
        finally:
            if node_id:  # as `tagops serve` does: no HAProxy, config or socket folder outlives the module
                release_haproxy(settings, node_id)
                assert not any((base / node_id).exists() for base in haproxy_folders(settings))


def process_name(pid: int) -> str:
    """The process's name; ``""`` for one that exited since its socket was listed (e.g. an old HAProxy)."""
    import psutil

    try:
        return str(psutil.Process(pid).name())
    except psutil.NoSuchProcess:
        return ""


def listed_until(select: Callable[[list[Any]], Any], done: Callable[[Any], bool]) -> Any:
    """``select`` of the listening sockets, listed again every 0.5 s for up to 10 s until ``done`` of it.

    Ray reloads HAProxy when the replica set changes: for a moment a listener may be between the old
    process and the new one, or listed for an old one that has exited since (seen in CI: the metrics
    port missing; no process named on the serving port).
    """
    import psutil

    deadline = time.monotonic() + 10
    while True:
        listening = [
            c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid
        ]
        selected = select(listening)
        if done(selected) or time.monotonic() > deadline:
            return selected
        time.sleep(0.5)


def replica_listeners() -> list[Any]:
    """Addresses the Serve replicas' own HTTP servers listen on (Ray's direct-ingress port range)."""
    import psutil

    return [
        c.laddr
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
        and c.pid
        and "ServeRepli" in process_name(c.pid)
        and 30000 <= c.laddr.port < 30200
    ]


def test_the_proxy_listens_on_loopback_only(served: Served) -> None:
    import psutil

    listeners = [
        c.laddr.ip
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == served.config.port
    ]
    assert listeners, "nothing listens on the Serve port"
    assert set(listeners) <= {"127.0.0.1"}


def test_haproxy_side_listeners_are_on_loopback(served: Served) -> None:
    """Ray's template binds HAProxy's stats page and Prometheus exporter on every interface; not here."""
    import psutil

    from tagops.serving.ray.ingress import haproxy_folders

    ours = str(haproxy_folders(served.settings)[0])  # this module's HAProxy: its config lies in there

    def is_ours(pid: int) -> bool:
        try:
            process = psutil.Process(pid)
            return process.name() == "haproxy" and any(a.startswith(ours) for a in process.cmdline())
        except psutil.NoSuchProcess:  # exited since its socket was listed
            return False

    expected = {
        served.config.port,
        int(os.environ["RAY_SERVE_HAPROXY_STATS_PORT"]),
        int(os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"]),
    }
    haproxy = listed_until(
        lambda listening: [c.laddr for c in listening if is_ours(c.pid)],
        lambda addresses: expected <= {addr.port for addr in addresses},
    )
    ports = {addr.port for addr in haproxy}
    assert {served.config.port, int(os.environ["RAY_SERVE_HAPROXY_STATS_PORT"])} <= ports, haproxy
    assert int(os.environ["RAY_SERVE_HAPROXY_METRICS_PORT"]) in ports, haproxy
    assert {addr.ip for addr in haproxy} == {"127.0.0.1"}, haproxy


def test_haproxy_fronts_replicas_that_listen_on_loopback(served: Served) -> None:
    front = listed_until(
        lambda listening: (
            {process_name(c.pid) for c in listening if c.laddr.port == served.config.port} - {""}
        ),
        bool,
    )
    assert front == {"haproxy"}, front
    replica_ports = replica_listeners()
    assert len(replica_ports) == served.config.num_replicas, replica_ports
    assert {addr.ip for addr in replica_ports} == {"127.0.0.1"}


def test_every_replica_socket_listens_on_loopback(served: Served) -> None:
    """Ray binds a replica's inter-deployment gRPC server to [::]; on the embedded cluster it is narrowed."""
    import psutil

    listening = [c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid]
    replicas = [c.laddr for c in listening if "ServeRepli" in process_name(c.pid)]
    assert len(replicas) >= 2 * served.config.num_replicas, replicas  # HTTP, gRPC and Ray's own per replica
    assert {addr.ip for addr in replicas} <= {"127.0.0.1", "::ffff:127.0.0.1"}, replicas


def test_replicas_answer_without_waiting_for_delayed_acks(served: Served) -> None:
    """A response is written in two sends (headers, body); with Nagle on, the body waits for the client's
    delayed ACK, ~40 ms on Linux. Ray opens the replica's socket with protocol 0, so plain asyncio never
    sets TCP_NODELAY; uvloop does. Measured on one replica: median 48 ms without uvloop, 4-5 ms with it."""
    import http.client
    import json
    import statistics

    replica = replica_listeners()[0]  # straight to a replica: HAProxy spreads requests over connections
    connection = http.client.HTTPConnection(replica.ip, replica.port, timeout=30)
    body = json.dumps({"items": [ITEM]})
    latencies = []
    for _ in range(60):  # Linux ACKs the first segments of a connection at once ("quick ACK"): go past them
        started = time.perf_counter()
        connection.request("POST", "/v1/predict", body, {"content-type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
        latencies.append(time.perf_counter() - started)
        served.items_sent.append(1)  # logged like any prediction
    connection.close()
    assert statistics.median(latencies[30:]) < 0.025, [round(1000 * t, 1) for t in latencies]


def test_the_embedded_head_runs_only_what_serving_uses(served: Served) -> None:
    """`tagops serve`'s lean node: no dashboard API server, autoscaler monitor or log monitor."""
    from ray._private import ray_constants, worker

    started = set(worker._global_node.all_processes)
    assert {ray_constants.PROCESS_TYPE_GCS_SERVER, ray_constants.PROCESS_TYPE_RAYLET} <= started
    assert not started & {
        ray_constants.PROCESS_TYPE_DASHBOARD,
        ray_constants.PROCESS_TYPE_MONITOR,
        ray_constants.PROCESS_TYPE_LOG_MONITOR,
    }


def test_ready_model_and_docs(served: Served) -> None:
    with httpx.Client(timeout=30) as http:
        assert http.get(f"{served.url}/readyz").json()["status"] == "ready"
        model = http.get(f"{served.url}/v1/model").json()
        assert (model["name"], model["version"], model["alias"]) == (
            "tagops",
            served.versions["linear"],
            "champion",
        )
        assert model["family"] == "linear"
        assert model["holdout_metrics"]["overall.f1"] > 0
        assert model["dataset_sha256"]
        assert http.get(f"{served.url}/docs").status_code == 200


def test_concurrent_predictions_are_answered_by_batches(served: Served) -> None:
    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(16) as pool:
        responses = list(
            pool.map(lambda i: served.predict(http, [ITEM, {"title": f"YOLO detector {i}"}]), range(64))
        )
        assert [r.status_code for r in responses] == [200] * 64
        first = responses[0].json()["predictions"]
        assert first[0]["tag"] == "natural-language-processing"
        assert first[1]["tag"] == "computer-vision"
        metrics = "".join(http.get(f"{served.url}/metrics").text for _ in range(4))  # some replica's view
        batch_sums = [
            line for line in metrics.splitlines() if line.startswith("tagops_predict_batch_items_sum")
        ]
        batch_counts = [
            line for line in metrics.splitlines() if line.startswith("tagops_predict_batch_items_count")
        ]
        assert batch_sums and batch_counts


def test_replicas_write_no_access_log_by_default(served: Served) -> None:
    assert served.config.access_log is False
    with httpx.Client(timeout=30) as http:
        for _ in range(4):  # both replicas
            assert served.predict(http, [ITEM]).status_code == 200
    time.sleep(2)  # Ray writes a request's access-log line after its response
    logs = sorted(served.settings.ray_temp_dir.glob("session_latest/logs/serve/replica_*.log"))
    assert logs, "no replica log found"
    text = "".join(log.read_text(errors="replace") for log in logs)
    assert "Finished initializing replica" in text  # the right files
    assert "/v1/predict" not in text  # with it on, Ray writes "POST /v1/predict 200 4.4ms" per request


def test_bounds_and_keys_hold_behind_the_proxy(served: Served) -> None:
    with httpx.Client(timeout=30) as http:
        too_many = http.post(
            f"{served.url}/v1/predict", json={"items": [ITEM] * (served.config.max_items + 1)}
        )
        assert too_many.status_code == 422
        assert too_many.json()["detail"][0]["field"] == "items"
        huge = http.post(
            f"{served.url}/v1/predict",
            content=b"x" * (served.config.max_body_bytes + 1),
            headers={"content-type": "application/json"},
        )
        assert huge.status_code == 413
        prediction = served.predict(http, [ITEM]).json()["predictions"][0]
        body = {"prediction_id": prediction["prediction_id"], "tag": "natural-language-processing"}
        assert http.post(f"{served.url}/v1/feedback", json=body).status_code == 401
        stored = http.post(f"{served.url}/v1/feedback", json=body, headers=served.client)
        assert stored.status_code == 201, stored.text
        assert http.post(f"{served.url}/v1/admin/reload", headers=served.client).status_code == 403


def test_reload_under_load_switches_every_replica(served: Served) -> None:
    from tagops.registry.client import CHAMPION

    served.registry.set_alias(CHAMPION, served.versions["rules"])
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                statuses.append(served.predict(http, [ITEM]).status_code)

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        with httpx.Client(timeout=120) as http:
            reload = http.post(f"{served.url}/v1/admin/reload", headers=served.admin)
            time.sleep(0.5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    assert reload.status_code == 200, reload.text
    body = reload.json()
    assert body["current"]["version"] == served.versions["rules"]
    assert body["sync"] == {"replicas": 2, "on_version": 2}
    assert statuses and set(statuses) == {200}
    with httpx.Client(timeout=30) as http:
        seen = {http.get(f"{served.url}/v1/model").json()["version"] for _ in range(12)}
    assert seen == {served.versions["rules"]}


def test_every_prediction_is_in_the_log(served: Served) -> None:
    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog

    store = PredictionLog(default_database_url(served.settings))
    expected = sum(served.items_sent)
    deadline = time.monotonic() + 15
    while store.reader.count_predictions() < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert store.reader.count_predictions() == expected
    store.dispose()
