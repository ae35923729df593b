"""The Ray runtime edge: the one place that starts or joins a Ray cluster.

Locally an embedded single-node cluster is started with explicit CPUs, a small object store, its session
files under ``TAGOPS_HOME/ray`` and every port on loopback; with ``RAY_ADDRESS`` set, the same code joins
that cluster instead. Workloads take the session as given and never call ``ray.init`` themselves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

#: Object store for the embedded cluster: enough for this project's data, small enough for a laptop.
DEFAULT_OBJECT_STORE_BYTES = 256 * 1024**2


def available_cpus() -> int:
    """CPUs this process may use (respects affinity masks in containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def ray_session(
    settings: Settings,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int = DEFAULT_OBJECT_STORE_BYTES,
    lean: bool = False,
    own_session: bool = False,
) -> Iterator[dict[str, Any]]:
    """Start (or join) Ray for the duration of the block; yields the cluster's resources.

    A session that is already initialised (e.g. a test module's shared cluster) is reused and left running.
    For a long-running server, ``lean`` starts an embedded cluster without the head's service processes
    (:func:`lean_head_node`) and ``own_session`` starts its node processes in a session of their own
    (:func:`node_processes_in_own_session`); neither changes anything when joining a cluster.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        yield ray.cluster_resources()  # type: ignore[no-untyped-call]
        return
    send_ray_messages_to_stderr()
    if settings.ray_address:
        check_ray_address(settings)
        logger.info("joining the Ray cluster at %s", settings.ray_address)
        ray.init(address=settings.ray_address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        settings.ray_temp_dir.mkdir(parents=True, exist_ok=True)
        keep_node_on_loopback()
        with lean_head_node(enabled=lean), node_processes_in_own_session(enabled=own_session):
            ray.init(
                num_cpus=num_cpus or available_cpus(),
                num_gpus=num_gpus,
                object_store_memory=object_store_memory,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
                _temp_dir=str(settings.ray_temp_dir),
                _node_ip_address="127.0.0.1",
            )
    try:
        yield ray.cluster_resources()  # type: ignore[no-untyped-call]
    finally:
        ray.shutdown()


#: How long a cluster's head has to accept a connection in :func:`check_ray_address` (seconds).
RAY_CHECK_TIMEOUT_S = 5.0


def check_ray_address(settings: Settings) -> None:
    """Fail at once when the head of the cluster at ``RAY_ADDRESS`` cannot be reached at all.

    Why: ``ray.init`` keeps retrying an address nobody answers on, printing a warning every few seconds,
    for minutes; a mistyped or stopped cluster would look like a command that hangs. ``host:port`` (the
    head's GCS) and ``ray://host:port`` (Ray Client) are checked by opening a TCP connection; ``auto``,
    ``local``, an address without a port and other forms are left to Ray.

    Raises:
        TagopsError: naming the address, the variable that set it and the reason.

    """
    import socket
    from urllib.parse import urlsplit

    from tagops.errors import TagopsError

    address = settings.ray_address or ""
    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    if parts.scheme not in ("gcs", "ray") or address in ("auto", "local"):
        return
    where = f"the Ray cluster at {address} ({settings.ray_address_variable})"
    try:
        host, port = parts.hostname, parts.port
    except ValueError as error:  # "host:abc"
        raise TagopsError(f"{where}: {error}") from None
    if not host or port is None:
        return  # Ray's own defaults and errors apply
    try:
        socket.create_connection((host, port), timeout=RAY_CHECK_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise TagopsError(f"cannot reach {where}: {reason}") from None


def keep_node_on_loopback() -> None:
    """Hold this process's Ray to ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` even when it was imported first.

    Ray reads that variable once, when ``ray`` is first imported; with it at ``0`` every address Ray
    looks up for this node is loopback. A program that imported ``ray`` before the variable was set
    would otherwise start the embedded cluster with Serve replicas listening on every interface
    (``tests/integration/test_ray_serving.py`` checks their sockets). A ``1`` the user set is left alone.
    """
    from ray._private import ray_constants

    if os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR) == "0":
        ray_constants.ENABLE_RAY_CLUSTER = False


#: The head's processes a lean embedded node does without: the dashboard's API server (started even with
#: ``include_dashboard=False``: jobs, state API, usage stats), the autoscaler's monitor (a one-node cluster
#: of fixed size has nothing to scale) and the log monitor (it relays worker logs to drivers that ask for
#: them; ``log_to_driver=False`` here).
LEAN_SKIPPED_PROCESSES = ("start_api_server", "start_monitor", "start_log_monitor")


@contextmanager
def lean_head_node(*, enabled: bool) -> Iterator[None]:
    """While the block starts an embedded node, skip the head processes a server does not use.

    Each is a Python process that imports its own stack on the node's CPUs while the cluster and the
    replicas start: on 2 CPUs, skipping them takes about 2 s off a Ray Serve cold start
    (``benchmarks/serve_defaults.py``). The embedded cluster then answers no Jobs or state-API calls and
    ``ray status`` shows no autoscaler; a cluster a team runs is joined as it is. Ray 2.60 starts them
    from ``ray._private.node.Node``; another Ray without those methods starts them all.
    """
    if not enabled:
        yield
        return
    from ray._private import node

    originals = {name: getattr(node.Node, name, None) for name in LEAN_SKIPPED_PROCESSES}
    if None in originals.values():
        yield
        return

    def skip(self: Any, *args: Any, **kwargs: Any) -> None:
        return None

    for name in originals:
        setattr(node.Node, name, skip)
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(node.Node, name, method)


@contextmanager
def node_processes_in_own_session(*, enabled: bool) -> Iterator[None]:
    """Start the embedded cluster's node processes (GCS, raylet, agents) in a session of their own.

    Otherwise they share this process's group, and a stop signalled to the group (``kill -TERM -PGID``,
    supervisord's ``stopasgroup``) kills the cluster under the running server: Serve's controller can no
    longer drain and stop replicas and every shutdown step waits for a dead peer. In their own session
    only this process gets the signal and stops the cluster in order; they still die with it (Ray's
    kernel fate sharing). Ray 2.60 starts them through ``ray._private.services.ConsolePopen``; another
    Ray without it is left as it is.
    """
    try:
        from ray._private import services

        original = getattr(services, "ConsolePopen", None) if enabled else None
    except ImportError:
        original = None
    if original is None:
        yield
        return

    class OwnSession(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)

    setattr(services, "ConsolePopen", OwnSession)  # noqa: B010 (a class attribute mypy sees as a type)
    try:
        yield
    finally:
        setattr(services, "ConsolePopen", original)  # noqa: B010


def send_ray_messages_to_stderr() -> None:
    """Print the messages Ray relays to this process (raylet warnings) on stderr, never on stdout.

    Ray prints the raylet's warnings (e.g. "N PYTHON worker processes have been started") to the driver's
    stdout even with ``log_to_driver=False``; stdout carries a command's result (``tagops train`` prints
    JSON), which a warning in front of it would break. Ray's printer is replaced by one that marks every
    message as an error stream message; a Ray without that printer is left as it is.
    """
    try:
        from ray._private import worker
    except ImportError:  # pragma: no cover - Ray is a dependency
        return
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "tagops_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        printer({**data, "is_err": True}, ignore_prefix)

    to_stderr.tagops_stderr = True  # type: ignore[attr-defined]
    to_stderr.__wrapped__ = printer  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr
