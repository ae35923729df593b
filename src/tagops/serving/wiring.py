"""Build one serving replica from its config and settings, before any HTTP.

:func:`build_replica` loads the first model, opens the prediction log (and the shadow log when a shadow
model is configured), and builds the metrics, the :class:`~tagops.serving.service.ServingService`, the
batcher and the batch gate. It is the only place serving constructs prediction-log stores. The HTTP app
(:func:`tagops.serving.app.create_app`) and the Ray Serve deployment take what it returns.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tagops.model_ref import ModelRef
from tagops.predlog.log import PredictionLog
from tagops.serving.batching import (
    AsyncBatcher,
    BatchAnswer,
    BatchGate,
    Infer,
    InferenceThread,
    model_chars,
    predict_batch,
    predict_in_turns,
)
from tagops.serving.keys import KeyStore
from tagops.serving.loader import RegistryModelLoader
from tagops.serving.metrics import ServingMetrics
from tagops.serving.model import ModelLoader, PredictorLike, ServedModel, concrete_uri
from tagops.serving.service import ServingService
from tagops.serving.state import ServingState

if TYPE_CHECKING:
    from tagops.config import ServeConfig
    from tagops.serving.shadow import ShadowScorer
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Replica:
    """What one replica serves with: the service, and the inference its requests go through."""

    service: ServingService
    #: ``infer(titles, descriptions)``: one request's items, predicted as part of a batch.
    infer: Infer


def build_replica(
    cfg: ServeConfig,
    settings: Settings,
    *,
    loader: ModelLoader | None = None,
    predictor: PredictorLike | None = None,
    store: PredictionLog | None = None,
    infer: Infer | None = None,
    inference: InferenceThread | None = None,
    deployment_id: str | None = None,
    replica_id: str | None = None,
) -> Replica:
    """Build a replica serving ``cfg``; everything but the config and settings has a default.

    Args:
        cfg: bounds, keys, batching, log and model settings.
        settings: where state lives (the default prediction log is SQLite under ``TAGOPS_HOME``).
        loader: loads models, first and on reload (default: the MLflow registry, cached per host).
        predictor: the model to serve first (default: the deployment's current model when
            ``deployment_id`` names one that has it, else what ``cfg.model_uri`` names).
        store: the prediction log (default: ``cfg.database_url`` or SQLite under ``TAGOPS_HOME``).
        infer: batched inference (default: an in-process :class:`AsyncBatcher`; Ray Serve passes its
            ``@serve.batch`` method).
        inference: the thread inference runs on when ``cfg.predict_in_thread`` (default: a new one; Ray
            Serve passes the one its batch method uses, so that a replica infers on one thread).
        deployment_id: replicas sharing this id follow each other's reloads (default: a new id).
        replica_id: this replica's name in logs, metrics and the database (default: host-pid-random).

    """
    replica_id = replica_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    metrics = ServingMetrics(replica_id)

    def count_rows(outcome: str, count: int) -> None:
        if outcome == "unjournaled":  # not an outcome of its own: these rows are also written or not
            metrics.log_unjournaled_rows.inc(count)
        else:
            metrics.log_rows.labels(outcome=outcome).inc(count)

    if store is None:
        store = PredictionLog.from_config(cfg, settings, on_rows=count_rows)
    elif store.writer.on_rows is None:
        store.writer.on_rows = count_rows
    state = ServingState(store.engine)
    loader = loader or RegistryModelLoader(settings, threshold=cfg.threshold)
    if predictor is None:
        predictor, model_uri = _first_model(cfg, state, loader, deployment_id)
    else:
        model_uri = concrete_uri(predictor, cfg.model_uri)
    service = ServingService(
        config=cfg,
        model=ServedModel(predictor, model_uri, ModelRef.parse(cfg.model_uri).alias),
        store=store,
        state=state,
        keys=KeyStore(store.engine, cache_ttl_s=cfg.key_cache_ttl_s),
        metrics=metrics,
        loader=loader,
        deployment_id=deployment_id or uuid.uuid4().hex,
        replica_id=replica_id,
        shadow=_shadow_scorer(cfg, store, replica_id, metrics),
    )
    inference = inference or InferenceThread()
    return Replica(service, _in_turns(cfg, service, _gated(cfg, service, infer, inference), inference))


def _first_model(
    cfg: ServeConfig, state: ServingState, loader: ModelLoader, deployment_id: str | None
) -> tuple[PredictorLike, str]:
    """The model a (re)starting replica serves: the deployment's current target, else ``model_uri``."""
    if deployment_id is not None:  # a deployment whose replicas may have reloaded since it started
        state.create_tables()
        target = state.get_target(deployment_id)
        if target is not None:
            try:
                return loader.load(target[0]), target[0]
            except Exception:
                logger.exception(
                    "cannot load the deployment's model %s; loading %s", target[0], cfg.model_uri
                )
    predictor = loader.load(cfg.model_uri)
    return predictor, concrete_uri(predictor, cfg.model_uri)


def _shadow_scorer(
    cfg: ServeConfig, store: PredictionLog, replica_id: str, metrics: ServingMetrics
) -> ShadowScorer | None:
    """The shadow scorer ``cfg.shadow_model_uri`` asks for, with a log writer of its own; else ``None``."""
    if cfg.shadow_model_uri is None:
        return None
    from tagops.serving.shadow import ShadowScorer

    # A writer and queue of its own on the same database: shadow rows never take champion rows' room.
    return ShadowScorer(
        store=store.shadow_writer(),
        replica_id=replica_id,
        max_items=cfg.shadow_queue_items,
        batch_items=cfg.max_batch_size,
        metrics=metrics,
    )


def _in_turns(cfg: ServeConfig, service: ServingService, infer: Infer, inference: InferenceThread) -> Infer:
    """``infer`` for ordinary requests; one with more text than ``turn_chars`` is predicted in turns."""
    thread = inference if cfg.predict_in_thread else None

    async def routed(titles: list[str], descriptions: list[str]) -> BatchAnswer:
        if model_chars(titles, descriptions) <= cfg.turn_chars:
            return await infer(titles, descriptions)
        return await predict_in_turns(
            service.model,
            titles,
            descriptions,
            turn_chars=cfg.turn_chars,
            thread=thread,
            metrics=service.metrics,
        )

    return routed


def _gated(
    cfg: ServeConfig, service: ServingService, infer: Infer | None, inference: InferenceThread
) -> Infer:
    """``infer`` (default: an in-process batcher), behind the batch gate if ``batch_hold_fraction`` > 0."""
    metrics = service.metrics
    if infer is None:
        batcher = AsyncBatcher(
            lambda requests: predict_batch(service.model, requests, metrics),
            max_items=cfg.max_batch_size,
            wait_s=cfg.batch_wait_timeout_s,
            in_thread=cfg.predict_in_thread,
            thread=inference,
        )
        infer = batcher.submit
    if cfg.batch_hold_fraction <= 0:
        return infer

    def alone(titles: list[str], descriptions: list[str]) -> BatchAnswer:
        metrics.unbatched.inc()
        return predict_batch(service.model, [(titles, descriptions)], metrics)[0]

    # A batch of one skips the batcher when inference runs on the event loop anyway (see BatchGate).
    return BatchGate(
        max_items=cfg.max_batch_size,
        hold_fraction=cfg.batch_hold_fraction,
        on_release=metrics.gate_released,
    ).wrap(infer, None if cfg.predict_in_thread else alone)
