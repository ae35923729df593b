"""Run the prediction API on uvicorn in this process, and the socket helpers both engines use.

``tagops serve --engine uvicorn [--host H] [--port P] [--config configs/serve.yaml]``; the Ray Serve engine
is :mod:`tagops.serving.ray.server`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tagops.errors import TagopsError

if TYPE_CHECKING:
    from tagops.config import ServeConfig
    from tagops.serving.profile import Choice
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

#: Where :func:`free_port` looks: below the ephemeral range of Linux (32768-60999), macOS and Windows
#: (49152-65535), and below the ports Ray Serve gives replicas (30000-31000).
PICKED_PORTS = range(20000, 30000)


def free_port(host: str = "127.0.0.1", *, tries: int = 100) -> int:
    """A TCP port nothing listens on at the moment, for a listener another process binds later.

    Not the OS's pick (bind to port 0): that comes from the ephemeral range, from which every
    process's outgoing connections and port-0 listeners also draw. Between the pick and the bind
    the embedded Ray cluster starts dozens of such processes, and one of them can take HAProxy's
    stats port first, so HAProxy and the whole server fail to start. A random free port
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


class ServeError(TagopsError):
    """The server could not start (port taken, not enough CPUs, replicas failing to start)."""


def base_url(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 hosts in brackets; a wildcard host shown as loopback to click)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the listening
    # socket says TCP, and without it Nagle + delayed ACK hold back the second send of every response
    # until the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    return sock


async def watch_log_writer(service: Any, server: Any, *, interval_s: float = 1.0) -> bool:
    """Stop ``server`` when the ready service's prediction log writer has died; ``True`` if it did.

    Readiness already fails then (``/readyz``); stopping the process too lets its supervisor restart it
    with a new writer, which writes the rows the dead one left in the journal. Returns ``False`` when the
    server stops for another reason first.
    """
    while not server.should_exit:
        await asyncio.sleep(interval_s)
        if service.ready and not service.store.writer.alive:
            logger.error(
                "the prediction log writer has stopped; shutting down so that the server is restarted "
                "(its rows stay in the journal and are written at the next start)"
            )
            server.should_exit = True
            return True
    return False


def run_uvicorn(
    cfg: ServeConfig,
    settings: Settings,
    *,
    on_ready: Callable[[str, str], None],
    on_fitted: Callable[[list[Choice]], None] | None = None,
) -> None:
    """Serve the app in this process with uvicorn until SIGINT/SIGTERM.

    The model is loaded first (a missing champion fails here, in one line); the config's unset tuned
    fields are then chosen for it (:func:`tagops.serving.profile.fit_to_model`) and passed to
    ``on_fitted``. Inference uses this process's CPUs, so ``num_cpus`` does not apply.
    """
    import uvicorn

    from tagops.runtime import available_cpus
    from tagops.serving.app import create_app
    from tagops.serving.loader import RegistryModelLoader
    from tagops.serving.profile import TUNED_FIELDS, fit_to_model
    from tagops.serving.wiring import build_replica

    loader = RegistryModelLoader(settings, threshold=cfg.threshold)
    predictor = loader.load(cfg.model_uri)
    fields = [name for name in TUNED_FIELDS if name != "num_cpus"]
    cfg, choices = fit_to_model(cfg, predictor.describe(), cpus=available_cpus(), fields=fields)
    if on_fitted is not None:
        on_fitted(choices)
    replica = build_replica(cfg, settings, loader=loader, predictor=predictor)
    app = create_app(replica.service, replica.infer)
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

    writer_died = False

    async def serve() -> None:
        nonlocal writer_died
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            on_ready(base_url(cfg.host, port), app.state.service.model.uri)
        watchdog = asyncio.create_task(watch_log_writer(app.state.service, server))
        await task
        writer_died = watchdog.done() and watchdog.result()
        watchdog.cancel()

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
    if writer_died:
        raise ServeError("stopped: the prediction log writer died (its rows stay in the journal); restart it")
