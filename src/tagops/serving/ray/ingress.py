"""The environment the embedded Ray cluster serves with, and HAProxy ingress set-up and clean-up.

Ray reads these settings from its own processes' environment when they start, so they are computed before
the cluster starts (:func:`ray_serving_environment`) and HAProxy's leftovers are removed after it stops
(:func:`release_haproxy`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.serving.server import ServeError, free_port

if TYPE_CHECKING:
    from tagops.config import ServeConfig
    from tagops.settings import Settings


#: Ray settings for serving, read by Ray's own processes when they start:
#: - workers at nice 0, not Ray's default 15, so the proxy and replicas do not yield to every other
#:   process on a shared host, which would slow every request;
#: - the proxy talks to replicas over gRPC rather than actor calls, which is faster (Ray's
#:   "throughput-optimized" setting does the same; ``benchmarks/serve.py``).
#: On a cluster you start yourself (RAY_ADDRESS, KubeRay), set them in its nodes' environment.
RAY_SERVING_ENVIRONMENT = {"RAY_worker_niceness": "0", "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}

#: HAProxy accepts socket paths of at most 97 bytes, and Ray puts them in a 56-character node-id folder
#: inside the folder we name: past this length that folder moves to a short one in the temp dir.
_MAX_SOCKET_FOLDER = 97 - 57 - len("/metrics.sock")


def haproxy_folders(settings: Settings) -> tuple[Path, Path]:
    """Where HAProxy's files go (config, server state) and where its sockets go; Ray adds a node-id folder."""
    folder = settings.home / "serving" / "haproxy"
    if len(str(folder)) <= _MAX_SOCKET_FOLDER:
        return folder, folder
    import hashlib
    import tempfile

    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:10]
    return folder, Path(tempfile.gettempdir()) / f"tgh-{digest}"


def _haproxy_processes(settings: Settings, node_id: str) -> list[Any]:
    """The HAProxy processes serving ``node_id`` of the embedded cluster (found by their config file)."""
    import psutil

    folder, _ = haproxy_folders(settings)
    config = str(folder / node_id / "haproxy.cfg")
    found: list[psutil.Process] = []
    for process in psutil.process_iter(["name", "cmdline"]):
        args = process.info.get("cmdline") or []
        named = (process.info.get("name") or "").startswith("haproxy")
        if named and any(a == "-f" and b == config for a, b in itertools.pairwise(args)):
            found.append(process)
    return found


def drain_haproxy(settings: Settings, node_id: str, *, timeout: float) -> bool:
    """Soft-stop the embedded cluster's HAProxy and wait up to ``timeout`` for its requests to finish.

    Serve's shutdown stops HAProxy with SIGKILL, cutting the requests passing through it. Before that,
    SIGUSR1 (HAProxy's soft stop) closes its listener and idle connections and lets the requests in
    progress be answered; HAProxy exits when the last one is. Returns whether it exited in time.
    """
    import psutil

    processes = _haproxy_processes(settings, node_id)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGUSR1)
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return not alive


def release_haproxy(settings: Settings, node_id: str, *, timeout: float = 5.0) -> list[int]:
    """Stop any HAProxy still running for ``node_id`` of the embedded cluster and delete its files.

    Ray runs HAProxy as a child process of its HAProxy manager actor. When Serve's shutdown times out
    ("Controller failed to shut down within 30.0s"), the cluster is torn down without it, and HAProxy,
    re-parented to init, keeps the API port and its stats port open, so the next ``tagops serve`` on
    that port cannot start. Also, Ray leaves each node's folder behind.
    Returns the pids that had to be stopped.
    """
    import shutil

    import psutil

    folder, sockets = haproxy_folders(settings)
    left = _haproxy_processes(settings, node_id)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(left, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    for base in {folder, sockets}:
        shutil.rmtree(base / node_id, ignore_errors=True)
    if sockets != folder:
        with contextlib.suppress(OSError):
            sockets.rmdir()  # only when no other service uses it
    return [process.pid for process in left]


def ray_serving_environment(cfg: ServeConfig, settings: Settings) -> dict[str, str]:
    """The environment the embedded Ray cluster is started with to serve ``cfg``.

    With ``ingress: haproxy`` Ray 2.60's HAProxy ingress replaces the Python proxy: HAProxy listens on
    ``cfg.host:cfg.port`` and forwards to the replicas, which listen on ``cfg.host`` themselves (ports from
    30000). Its files go under ``TAGOPS_HOME/serving/haproxy`` rather than Ray's fixed ``/tmp/haproxy-serve``
    (two services on one machine would share them), and its side listeners get free ports rather than
    Ray's fixed 8404 (stats page), 9101 (Prometheus) and 8500 (fallback proxy) for the same reason. Ray's
    template binds the stats page and Prometheus exporter on every interface: Ray starts HAProxy through
    :mod:`~tagops.serving.ray.haproxy_bind`, which moves them to loopback (unless
    ``RAY_SERVE_HAPROXY_BINARY_PATH`` is already set, as every variable here). A stopping replica stays open
    2 s (Ray's default is 30 s, for load balancers outside Ray) because the HAProxy Ray manages learns of it
    within 0.1 s.
    Ray's ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` is set here only: it also turns on direct ingress, which needs
    HAProxy in front.
    """
    env = dict(RAY_SERVING_ENVIRONMENT)
    if cfg.ingress != "haproxy":
        return env
    folder, sockets = haproxy_folders(settings)
    folder.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH"):  # a user's own binary is started as it is
        from tagops.serving.ray.haproxy_bind import real_haproxy, write_wrapper

        try:
            haproxy = real_haproxy()
        except FileNotFoundError as error:
            raise ServeError(f"{error}; or serve with `ingress: proxy` (Ray's Python proxy)") from None
        env["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(write_wrapper(folder, haproxy))
    env.update(
        {
            "RAY_SERVE_ENABLE_HA_PROXY": "1",
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(sockets / "admin.sock"),
            "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(sockets / "metrics.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port("0.0.0.0")),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port("0.0.0.0")),
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port(cfg.host)),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
            "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S": "2",
            # Ray's throughput bundle (user code and router on the replica's own loop, buffered request
            # logs) and no per-request log datagrams to the HAProxy manager (our /metrics counts requests):
            # both raise throughput at concurrency 32 (benchmarks/serve.py).
            "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        }
    )
    return env
