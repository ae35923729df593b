"""Run the prediction API on Ray Serve: the embedded loopback cluster, or the one ``RAY_ADDRESS`` names.

``tagops serve --engine ray [--host H] [--port P] [--config configs/serve.yaml]``
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from tagops.serving.ray.ingress import drain_haproxy, ray_serving_environment, release_haproxy
from tagops.serving.server import ServeError, base_url, bind_socket

if TYPE_CHECKING:
    from tagops.config import ServeConfig
    from tagops.serving.profile import Choice
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _stop_on_signal() -> Iterator[threading.Event]:
    """An event SIGINT and SIGTERM set from here on, instead of their handlers (Ray's aborts the driver).

    Installed as soon as the cluster is up, so that a supervisor stopping a server that is still starting
    (Serve's start takes seconds) gets a clean stop: the start completes, then Serve and the cluster shut
    down and the command exits 0. Outside the main thread (an embedding program) signals are left alone.
    """
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: How long a stop waits for Serve's controller to drain and stop the replicas. Ray's own wait is 30 s,
#: which a stop signalled to the whole process group (systemd's default) always used up: the controller
#: had the signal too, so its graceful shutdown never answered.
SERVE_STOP_TIMEOUT_S = 5.0
#: How long a stop lets HAProxy finish the requests passing through it before Serve's shutdown kills it.
HAPROXY_DRAIN_TIMEOUT_S = 3.0


def _shutdown_serve(timeout_s: float) -> None:
    """``serve.shutdown()``, waiting at most ``timeout_s`` for the controller's graceful shutdown."""
    from ray import serve

    try:
        from ray.serve import context

        client, _ = context._check_cached_client_alive()  # what serve.shutdown() asks first
    except (ImportError, AttributeError):  # another Ray version: its own shutdown, its own wait
        serve.shutdown()  # type: ignore[no-untyped-call]
        return
    if client is not None:
        client.shutdown(timeout_s=timeout_s)
    context._disconnect()  # type: ignore[no-untyped-call]


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
    proxies_ready = _start_serve_controller(http)
    try:
        handle = serve.run(build_app(cfg), name=APP_NAME, route_prefix="/")
    except RuntimeError as error:
        raise ServeError(f"Ray Serve could not start the tagops replicas: {error}") from error
    try:
        ray.get(proxies_ready, timeout=PROXY_START_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise ServeError(f"Ray Serve's proxies did not start within {PROXY_START_TIMEOUT_S:g} s") from None
    return handle


#: How long a start waits for Serve's proxies (Serve's own ``serve.start`` waits as long).
PROXY_START_TIMEOUT_S = 60.0


def _start_serve_controller(http: dict[str, Any]) -> list[Any]:
    """Start Serve's controller and proxies; the proxies' readiness refs, for the caller to wait on.

    ``serve.start`` waits for the proxies before it returns, and only then can the app be deployed; the
    replica's start (its worker process, torch, the model) is the longest step, so starting it while the
    proxies come up saves about a second of a cold start (``benchmarks/serve_defaults.py``). This uses
    the pieces ``serve.start`` is made of in Ray 2.60; another Ray without them gets ``serve.start``.
    """
    from ray import serve

    try:
        from ray.serve._private import api as serve_api
        from ray.serve._private.client import ServeControllerClient
        from ray.serve.context import _set_global_client

        create = serve_api._create_controller_and_proxy_refs
        options = serve_api._coerce_controller_options(None)
    except (ImportError, AttributeError):  # pragma: no cover - the pinned Ray has them
        serve.start(http_options=http, proxy_location="HeadOnly")
        return []
    controller, proxies_ready = create(http, None, None, None, options, "HeadOnly")
    _set_global_client(ServeControllerClient(controller))  # type: ignore[no-untyped-call]
    return list(proxies_ready)


def run_ray(
    cfg: ServeConfig,
    settings: Settings,
    *,
    on_ready: Callable[[str, str], None],
    on_fitted: Callable[[list[Choice]], None] | None = None,
) -> None:
    """Serve on Ray Serve until SIGINT/SIGTERM, then shut Serve down (the log is flushed).

    The model is fetched here first (not loaded when this host has it already): a missing champion fails
    before Ray starts, the model is in the local cache before replicas load it, and the config's unset
    tuned fields are chosen for it
    (:func:`tagops.serving.profile.fit_to_model`, with the cluster's CPUs) and passed to ``on_fitted``.
    """
    from tagops.runtime import ray_session
    from tagops.serving.loader import RegistryModelLoader
    from tagops.serving.profile import fit_to_model

    if cfg.port == 0:
        raise ServeError("the Ray Serve engine needs an explicit --port (0 works only with --engine uvicorn)")
    uri, description = RegistryModelLoader(settings, threshold=cfg.threshold).prefetch(cfg.model_uri)
    probe = bind_socket(cfg.host, cfg.port)  # a taken port fails here, not deep inside Serve's proxy
    probe.close()
    # Set before the embedded cluster starts (its processes inherit them); a user's own values win.
    for key, value in ray_serving_environment(cfg, settings).items():
        os.environ.setdefault(key, value)
    node_id: str | None = None
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(ray_session(settings, lean=True, own_session=True))
            stop = stack.enter_context(_stop_on_signal())
            import ray

            if cfg.log_format == "json":
                import ray.serve  # sets up Serve's console logger, which this process's lines then go through

                from tagops.serving.logs import ray_serve_lines_as_json

                ray_serve_lines_as_json()

            if cfg.ingress == "haproxy" and not settings.ray_address:  # the embedded cluster's HAProxy
                node_id = ray.get_runtime_context().get_node_id()
            cpus = float(ray.cluster_resources().get("CPU", 0))  # type: ignore[no-untyped-call]
            cfg, choices = fit_to_model(cfg, description, cpus=cpus)
            if on_fitted is not None:
                on_fitted(choices)
            try:
                start_ray_serve(cfg)
                if not stop.is_set():
                    on_ready(base_url(cfg.host, cfg.port), uri)
                while not stop.wait(0.5):
                    pass
            finally:
                if node_id is not None and stop.is_set():  # requests in flight are answered first
                    drain_haproxy(settings, node_id, timeout=HAPROXY_DRAIN_TIMEOUT_S)
                _shutdown_serve(SERVE_STOP_TIMEOUT_S)
    finally:
        if node_id is not None:
            stopped = release_haproxy(settings, node_id)
            if stopped:
                logger.warning("stopped HAProxy %s, left running after Ray Serve shut down", stopped)
