"""Ray Serve deployment: a thin wrapper that serves :func:`tagops.serving.app.create_app` on replicas.

Each replica builds itself with :func:`tagops.serving.wiring.build_replica` (the deployment's model, the
prediction log, the service), serves the same FastAPI app the uvicorn engine serves, and routes
predictions through ``@serve.batch``: concurrent requests are batched (whole, up to
``max_batch_size`` items) into one ``predictor.predict`` call. Replicas, autoscaling and actor resources
come from :class:`~tagops.config.ServeConfig`; batch size and wait are the deployment's ``user_config``,
so ``serve deploy`` changes them without restarting replicas.

``tagops serve`` runs it on the embedded Ray (loopback); ``serve deploy deploy/serve-config.yaml`` or a
KubeRay RayService reach it through :func:`app_builder`. Ray is imported only inside functions.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from tagops.config import ServeConfig, load_config
from tagops.serving.batching import BatchAnswer, BatchRequest, InferenceThread, items_in, predict_batch

APP_NAME = "tagops"
DEPLOYMENT_NAME = "tagops"


def deployment_options(cfg: ServeConfig) -> dict[str, Any]:
    """``@serve.deployment`` options from the serving config."""
    actor: dict[str, Any] = {"num_cpus": cfg.num_cpus}
    if cfg.num_gpus:
        actor["num_gpus"] = cfg.num_gpus
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": actor,
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "max_queued_requests": cfg.max_queued_requests,
        "user_config": {
            "max_batch_size": cfg.max_batch_size,
            "batch_wait_timeout_s": cfg.batch_wait_timeout_s,
        },
        "health_check_period_s": cfg.health_check_period_s,
        "health_check_timeout_s": 30.0,
        "graceful_shutdown_timeout_s": 20.0,
        "max_constructor_retry_count": 3,
        "logging_config": {"enable_access_log": cfg.access_log},
    }
    if cfg.log_format == "json":  # Serve's replica log files (each replica's stderr: at its start)
        options["logging_config"]["encoding"] = "JSON"
    if cfg.autoscaling is not None:
        options["autoscaling_config"] = cfg.autoscaling.model_dump()
    else:
        options["num_replicas"] = cfg.num_replicas
    return options


def internal_grpc_on_loopback(node_ip: str) -> bool:
    """On a loopback node, make this replica's inter-deployment gRPC server listen on ``node_ip`` only.

    Ray 2.60 binds that server to ``[::]:0`` (every interface, in ``Replica._on_initialized``, after the
    user constructor ran). On the embedded cluster every Ray process has the node address ``127.0.0.1``
    and reaches the replica there, so the wildcard only exposes the port to the network. On a real
    cluster (a routable node address) nothing changes: other nodes' proxies must reach it. Returns
    whether the bind was narrowed; a Ray without the hook (another version) keeps its own bind.
    """
    import ipaddress

    if not ipaddress.ip_address(node_ip).is_loopback:
        return False
    try:
        from ray.serve._private import replica
    except ImportError:
        return False
    bind = getattr(replica, "add_port_to_grpc_server", None)
    if bind is None or getattr(bind, "tagops_loopback", False):
        return bind is not None
    host = f"[{node_ip}]" if ":" in node_ip else node_ip

    def bind_on_node_address(server: Any, address: str) -> Any:
        if address.startswith("[::]:"):
            address = f"{host}:{address.rsplit(':', 1)[1]}"
        return bind(server, address)

    bind_on_node_address.tagops_loopback = True  # type: ignore[attr-defined]
    setattr(replica, "add_port_to_grpc_server", bind_on_node_address)  # noqa: B010 (private, untyped)
    return True


def build_deployment(cfg: ServeConfig) -> Any:
    """The Ray Serve deployment class for ``cfg`` (options applied; bind it to get an application)."""
    from ray import serve

    @serve.deployment(**deployment_options(cfg))
    @serve.ingress()
    class TagopsDeployment:
        """One replica: the model, the app, and batched inference."""

        def __init__(self, config: dict[str, Any], deployment_id: str) -> None:
            import ray

            from tagops.serving.logs import configure_replica_logging
            from tagops.serving.wiring import build_replica
            from tagops.settings import prepare_environment, read_settings

            internal_grpc_on_loopback(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
            self.config = ServeConfig.model_validate(config)
            configure_replica_logging(self.config.log_format)
            settings = read_settings()
            prepare_environment(settings)
            self.inference = InferenceThread()
            context = serve.get_replica_context()
            # Loads the deployment's current model (a restarted replica rejoins its deployment's reloads);
            # predictions go through this replica's @serve.batch method.
            self.replica = build_replica(
                self.config,
                settings,
                infer=self.infer,
                inference=self.inference,
                deployment_id=deployment_id,
                replica_id=f"{context.deployment}#{context.replica_id.unique_id}",
            )
            self.service = self.replica.service

        def __serve_build_asgi_app__(self) -> Any:
            from tagops.serving.app import create_app

            return create_app(self.replica.service, self.replica.infer)

        def reconfigure(self, user_config: dict[str, Any]) -> None:
            """Apply batch size and wait from ``user_config`` (no restart)."""
            size = int(user_config.get("max_batch_size", self.config.max_batch_size))
            if size < self.config.max_items:
                raise ValueError(
                    f"max_batch_size ({size}) must be at least max_items ({self.config.max_items})"
                )
            batcher: Any = self.batched_predict  # @serve.batch adds the setters to the method
            batcher.set_max_batch_size(size)
            batcher.set_batch_wait_timeout_s(
                float(user_config.get("batch_wait_timeout_s", self.config.batch_wait_timeout_s))
            )

        def check_health(self) -> None:
            """Unhealthy (and replaced by Serve) when the prediction log writer has died."""
            if self.service.ready and not self.service.store.writer.alive:
                raise RuntimeError("prediction log writer is not running")

        @serve.batch(
            max_batch_size=cfg.max_batch_size,
            batch_wait_timeout_s=cfg.batch_wait_timeout_s,
            batch_size_fn=items_in,
        )
        async def batched_predict(self, requests: list[BatchRequest]) -> list[BatchAnswer]:
            """One ``predictor.predict`` call for every request in the batch (in a thread if configured)."""
            service = self.service
            if not self.config.predict_in_thread:  # see ServeConfig.predict_in_thread
                return predict_batch(service.model, requests, service.metrics)
            answers: list[BatchAnswer] = await self.inference.run(
                predict_batch, service.model, requests, service.metrics
            )
            return answers

        async def infer(self, titles: list[str], descriptions: list[str]) -> BatchAnswer:
            """Predict one request's items as part of the next batch."""
            answer: BatchAnswer = await self.batched_predict((titles, descriptions))
            return answer

    return TagopsDeployment


def build_app(cfg: ServeConfig, *, deployment_id: str | None = None) -> Any:
    """A bound Ray Serve application for ``cfg``; replicas sharing ``deployment_id`` follow one model."""
    # The database URL may hold a password: replicas read it from their own environment
    # (TAGOPS_SERVE_DATABASE_URL) unless the config names it, so it is not copied into Serve's state.
    config = cfg.model_dump(mode="json")
    return build_deployment(cfg).bind(config, deployment_id or uuid.uuid4().hex)


def app_builder(args: dict[str, Any]) -> Any:
    """Application builder for ``serve deploy`` and KubeRay (``tagops.serving.ray.deployment:app_builder``).

    ``args``: ``config_path`` (a ServeConfig YAML, optional), ``config`` (ServeConfig fields that
    override it) and ``deployment_id`` (optional; a new one per deploy by default).
    """
    raw = dict(args or {})
    path = raw.pop("config_path", None)
    overrides = raw.pop("config", None) or {}
    deployment_id = raw.pop("deployment_id", None)
    if raw:
        raise ValueError(
            f"unknown application args {sorted(raw)}; expected config_path, config, deployment_id"
        )
    if not isinstance(overrides, dict):
        raise ValueError("application arg 'config' must be a mapping of ServeConfig fields")
    cfg = load_config(ServeConfig, Path(os.path.expandvars(path)) if path else None, **overrides)
    return build_app(cfg, deployment_id=deployment_id)


def _undeployed_fields(cfg: ServeConfig) -> set[str]:
    """Fields left out of a Serve config: the secret URL, default text logs, and unused shadow settings.

    Leaving the unused shadow settings out keeps the rendered files in ``deploy/`` free of settings
    that do nothing without a shadow model; the builder fills them in with their defaults.
    """
    excluded = {"database_url"}
    if cfg.log_format == "text":  # the default, which the builder fills in
        excluded.add("log_format")
    if cfg.shadow_model_uri is None:
        excluded |= {"shadow_model_uri", "shadow_queue_items"}
    return excluded


def serve_deploy_config(cfg: ServeConfig) -> dict[str, Any]:
    """A Ray Serve config (``serve deploy`` / RayService ``serveConfigV2``) equivalent to ``cfg``.

    The serving config is inlined as the builder's ``args`` (all but ``database_url``, which replicas read
    from ``TAGOPS_SERVE_DATABASE_URL``); the deployment options are spelled out so they can be tuned there.
    """
    options = deployment_options(cfg)
    deployment: dict[str, Any] = {"name": DEPLOYMENT_NAME}
    for key in (
        "num_replicas",
        "autoscaling_config",
        "max_ongoing_requests",
        "max_queued_requests",
        "user_config",
        "health_check_period_s",
        "health_check_timeout_s",
        "graceful_shutdown_timeout_s",
        "ray_actor_options",
        "logging_config",
    ):
        if key in options:
            deployment[key] = options[key]
    http: dict[str, Any] = {"host": cfg.host, "port": cfg.port}
    if cfg.request_timeout_s is not None:
        http["request_timeout_s"] = cfg.request_timeout_s
    return {
        "proxy_location": "HeadOnly",
        "http_options": http,
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": "tagops.serving.ray.deployment:app_builder",
                "args": {"config": cfg.model_dump(mode="json", exclude=_undeployed_fields(cfg))},
                "deployments": [deployment],
            }
        ],
    }
