"""Run the prediction API: on Ray Serve (embedded loopback cluster or ``RAY_ADDRESS``) or on uvicorn.

``tagops serve [--engine ray|uvicorn] [--host H] [--port P] [--config configs/serve.yaml]``
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.errors import TagopsError

if TYPE_CHECKING:
    from tagops.config import ServeConfig
    from tagops.serving.loader import RegistryModelLoader
    from tagops.serving.model import PredictorLike
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


#: Ray settings for serving, read by Ray's own processes when they start:
#: - workers at nice 0, not Ray's default 15, so the proxy and replicas do not yield to every other
#:   process on a shared host (that added tens of ms per request here);
#: - the proxy talks to replicas over gRPC rather than actor calls (about a third less latency and
#:   more throughput on a 2-core machine; Ray's "throughput-optimized" setting does the same).
#: On a cluster you start yourself (RAY_ADDRESS, KubeRay), set them in its nodes' environment.
RAY_SERVING_ENVIRONMENT = {"RAY_worker_niceness": "0", "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}

#: HAProxy accepts socket paths of at most 97 bytes, and Ray puts them in a 56-character node-id folder
#: inside the folder we name: past this length that folder moves to a short one in the temp dir.
_MAX_SOCKET_FOLDER = 97 - 57 - len("/metrics.sock")


#: Where :func:`free_port` looks: below the ephemeral range of Linux (32768-60999), macOS and Windows
#: (49152-65535), and below the ports Ray Serve gives replicas (30000-31000).
PICKED_PORTS = range(20000, 30000)


def free_port(host: str = "127.0.0.1", *, tries: int = 100) -> int:
    """A TCP port nothing listens on at the moment, for a listener another process binds later.

    Not the OS's pick (bind to port 0): that comes from the ephemeral range, from which every
    process's outgoing connections and port-0 listeners also draw. Between the pick and the bind
    the embedded Ray cluster starts dozens of such processes, and once one of them took HAProxy's
    stats port first, so HAProxy and the whole server failed to start (seen here). A random free port
    in :data:`PICKED_PORTS` is taken only by a process that asks for that very port.
    """
    for port in random.sample(PICKED_PORTS, tries):
        try:
            sock = bind_socket(host, port)
        except ServeError:
            continue
        sock.close()
        return port
    raise ServeError(f"no free port on {host} among {tries} tried in {PICKED_PORTS}")


def haproxy_folders(settings: Settings) -> tuple[Path, Path]:
    """Where HAProxy's files go (config, server state) and where its sockets go; Ray adds a node-id folder."""
    folder = settings.home / "serving" / "haproxy"
    if len(str(folder)) <= _MAX_SOCKET_FOLDER:
        return folder, folder
    import hashlib
    import tempfile

    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:10]
    return folder, Path(tempfile.gettempdir()) / f"tgh-{digest}"


def release_haproxy(settings: Settings, node_id: str, *, timeout: float = 5.0) -> list[int]:
    """Stop any HAProxy still running for ``node_id`` of the embedded cluster and delete its files.

    Ray runs HAProxy as a child process of its HAProxy manager actor. When Serve's shutdown times out
    (seen here once: "Controller failed to shut down within 30.0s"), the cluster is torn down without
    it, and HAProxy, re-parented to init, kept the API port and its stats port open an hour later, so the
    next ``tagops serve`` on that port could not start. Also, Ray leaves each node's folder behind.
    Returns the pids that had to be stopped.
    """
    import shutil

    import psutil

    folder, sockets = haproxy_folders(settings)
    config = str(folder / node_id / "haproxy.cfg")
    left: list[psutil.Process] = []
    for process in psutil.process_iter(["name", "cmdline"]):
        args = process.info.get("cmdline") or []
        named = (process.info.get("name") or "").startswith("haproxy")
        if named and any(a == "-f" and b == config for a, b in itertools.pairwise(args)):
            left.append(process)
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
            # c=32 went 265 -> 427 req/s for linear and 0.43x -> 0.85x raw batched for the transformer.
            "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
        }
    )
    return env


class ServeError(TagopsError):
    """The server could not start (port taken, not enough CPUs, replicas failing to start)."""


def base_url(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 hosts in brackets; a wildcard host shown as loopback to click)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def load_first_model(cfg: ServeConfig, settings: Settings) -> tuple[RegistryModelLoader, PredictorLike]:
    """Load the configured model once before serving: a missing champion fails here, in one line."""
    from tagops.serving.loader import RegistryModelLoader

    loader = RegistryModelLoader(settings, threshold=cfg.threshold)
    return loader, loader.load(cfg.model_uri)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket says TCP, and without it Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    return sock


def run_uvicorn(cfg: ServeConfig, settings: Settings, *, on_ready: Callable[[str, str], None]) -> None:
    """Serve the app in this process with uvicorn until SIGINT/SIGTERM."""
    import uvicorn

    from tagops.serving.app import create_app
    from tagops.serving.model import concrete_uri

    loader, predictor = load_first_model(cfg, settings)
    app = create_app(
        predictor, settings, cfg, loader=loader, model_uri=concrete_uri(predictor, cfg.model_uri)
    )
    sock = bind_socket(cfg.host, cfg.port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=cfg.access_log,
            server_header=False,
            timeout_graceful_shutdown=20,
            timeout_keep_alive=30,
        )
    )

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            on_ready(base_url(cfg.host, port), app.state.service.model.uri)
        await task

    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal; a handler of ours
    # receives it, so a requested stop ends the command normally (exit 0) after the log is flushed.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(serve())
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        raise ServeError("the server did not start; see the log above")


def _wait_for_signal() -> None:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def start_ray_serve(cfg: ServeConfig) -> Any:
    """Start Serve's proxy on ``cfg.host:cfg.port`` and deploy the app (Ray must be up); returns a handle."""
    import ray
    from ray import serve

    from tagops.serving.ray.deployment import APP_NAME, build_app

    cpus = float(ray.cluster_resources().get("CPU", 0))  # type: ignore[no-untyped-call]
    replicas = cfg.autoscaling.min_replicas if cfg.autoscaling else cfg.num_replicas
    if replicas * cfg.num_cpus > cpus:
        raise ServeError(
            f"{replicas} replica(s) x num_cpus {cfg.num_cpus} need {replicas * cfg.num_cpus:g} CPUs; "
            f"the Ray cluster has {cpus:g} (lower num_replicas or num_cpus in the serve config)"
        )
    http: dict[str, Any] = {"host": cfg.host, "port": cfg.port}
    if cfg.request_timeout_s is not None:
        http["request_timeout_s"] = cfg.request_timeout_s
    serve.start(http_options=http, proxy_location="HeadOnly")
    try:
        return serve.run(build_app(cfg), name=APP_NAME, route_prefix="/")
    except RuntimeError as error:
        raise ServeError(f"Ray Serve could not start the tagops replicas: {error}") from error


def run_ray(cfg: ServeConfig, settings: Settings, *, on_ready: Callable[[str, str], None]) -> None:
    """Serve on Ray Serve until SIGINT/SIGTERM, then shut Serve down (the log is flushed)."""
    from tagops.runtime import ray_session
    from tagops.serving.model import concrete_uri

    if cfg.port == 0:
        raise ServeError("the Ray Serve engine needs an explicit --port (0 works only with --engine uvicorn)")
    # Load once here: a missing champion fails before Ray starts, and the model is in the local cache
    # before replicas load it.
    _, predictor = load_first_model(cfg, settings)
    uri = concrete_uri(predictor, cfg.model_uri)
    del predictor
    probe = bind_socket(cfg.host, cfg.port)  # a taken port fails here, not deep inside Serve's proxy
    probe.close()
    # Set before the embedded cluster starts (its processes inherit them); a user's own values win.
    for key, value in ray_serving_environment(cfg, settings).items():
        os.environ.setdefault(key, value)
    node_id: str | None = None
    try:
        with ray_session(settings):
            import ray
            from ray import serve

            if cfg.ingress == "haproxy" and not settings.ray_address:  # the embedded cluster's HAProxy
                node_id = ray.get_runtime_context().get_node_id()
            try:
                start_ray_serve(cfg)
                on_ready(base_url(cfg.host, cfg.port), uri)
                _wait_for_signal()
            finally:
                serve.shutdown()  # type: ignore[no-untyped-call]
    finally:
        if node_id is not None:
            stopped = release_haproxy(settings, node_id)
            if stopped:
                logger.warning("stopped HAProxy %s, left running after Ray Serve shut down", stopped)
