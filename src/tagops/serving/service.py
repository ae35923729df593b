"""What one serving replica holds and does, apart from HTTP: the model, reloads, the log, the replica sync.

The served model is one immutable :class:`ServedModel` referenced by :attr:`ServingService.model`. A batch
reads the reference once, so every answer in it comes from one model; a reload loads and warms the new
model beside the old one and then replaces the reference in a single assignment, so no request waits
for a load or sees a half-loaded model.

Replicas of one deployment stay on one model through the serving database: a reload records the new
model as the deployment's target, every replica reports what it serves every ``sync_interval_s`` and
switches when its model differs from the target (a restarted replica starts on the target directly).

A canary rollout follows the database too: :attr:`ServingService.rollout`
(:class:`~tagops.serving.canary.CanaryRollout`) holds this replica's canary, its share and its counts. A
reload to the canary's own version (a promotion) reuses the loaded canary and ends the rollout; a reload
to another model aborts it, since the champion it was compared with is gone.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tagops.errors import TagopsError
from tagops.model_ref import ModelRef
from tagops.predlog.schema import utcnow
from tagops.serving.canary import CanaryRollout
from tagops.serving.model import ModelLoader, ServedModel, concrete_uri, load_warm, warm

if TYPE_CHECKING:
    from tagops.config import ServeConfig
    from tagops.predlog.log import PredictionLog
    from tagops.serving.keys import KeyStore
    from tagops.serving.metrics import ServingMetrics
    from tagops.serving.shadow import ShadowScorer
    from tagops.serving.state import ServingState

logger = logging.getLogger(__name__)


class ReloadError(TagopsError):
    """The new model could not be loaded; the old one is still served."""


class ServingService:
    """One replica's model, prediction log, keys, metrics and replica bookkeeping."""

    def __init__(
        self,
        *,
        config: ServeConfig,
        model: ServedModel,
        store: PredictionLog,
        state: ServingState,
        keys: KeyStore,
        metrics: ServingMetrics,
        loader: ModelLoader,
        deployment_id: str,
        replica_id: str,
        shadow: ShadowScorer | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.store = store
        self.state = state
        self.keys = keys
        self.metrics = metrics
        #: Resolves and loads models on reload and when following the deployment's target.
        self.loader = loader
        self.deployment_id = deployment_id
        self.replica_id = replica_id
        self.ready = False
        self.not_ready_reason: str | None = "starting"
        self._reload_lock = threading.Lock()
        self._failed_target: tuple[str, float] | None = None
        #: Scores copies of requests with ``config.shadow_model_uri`` (``None``: no shadow configured).
        self.shadow = shadow
        self.shadow_reason: str | None = None if shadow is None else "not loaded yet"
        self._failed_shadow: tuple[str, float] | None = None
        # The aliases the configured URIs name (None: a version or a folder), reported with each model.
        self._alias = ModelRef.parse(config.model_uri).alias
        shadow_uri = config.shadow_model_uri
        self._shadow_alias = None if shadow_uri is None else ModelRef.parse(shadow_uri).alias
        #: This replica's part in the deployment's canary rollout (the canary, its share, its counts).
        self.rollout = CanaryRollout(
            state=state,
            deployment_id=deployment_id,
            replica_id=replica_id,
            loader=loader,
            metrics=metrics,
            champion=lambda: self.model,
        )
        metrics.set_model(**model.ref())

    @property
    def replica_max_age_s(self) -> float:
        """A replica that has not reported for this long is considered gone."""
        return max(3.0, 3 * self.config.sync_interval_s)

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the log writer, warm the model, register this replica; then the replica is ready."""
        self.store.writer.start()
        self.state.create_tables()
        warm(self.model)
        target_uri, _ = self.state.claim_target(self.deployment_id, self.model.uri, self.model.version)
        if target_uri != self.model.uri:
            logger.info("deployment serves %s; switching from %s", target_uri, self.model.uri)
            self.follow_targets()
        self.report()
        self.ready, self.not_ready_reason = True, None
        logger.info("replica %s serving %s", self.replica_id, self.model.uri)
        if self.shadow is not None:
            self.shadow.start()
            self.reload_shadow(trigger="start")

    def stop(self) -> None:
        """Stop taking traffic, forget this replica, write what is queued in the log."""
        self.ready, self.not_ready_reason = False, "shutting down"
        try:
            self.state.remove_replica(self.replica_id)
        except Exception as error:  # the row expires on its own
            logger.warning("could not unregister replica %s: %s", self.replica_id, error)
        if self.shadow is not None:
            self.shadow.stop()
        self.store.writer.stop()

    # --------------------------------------------------------------------------------------- reload
    def reload(self) -> tuple[ServedModel, ServedModel]:
        """Load what ``model_uri`` names now, warm it, switch to it; returns (previous, current).

        A model folder is loaded again every time; a registry URI only when it names another version.
        """
        with self._reload_lock:
            previous = self.model
            uri = self.config.model_uri
            try:
                target = self.loader.resolve(uri)
                canary = self.rollout.model
                if target == previous.uri:  # registry versions are immutable: nothing to load
                    current = previous
                    self.metrics.reloads.labels(trigger="admin", outcome="unchanged").inc()
                elif canary is not None and canary.uri == target:  # a promoted canary: already warm
                    current = ServedModel(canary.predictor, target, self._alias)
                    self._activate(current, trigger="admin")
                else:
                    predictor = self.loader.load(target)
                    current = ServedModel(predictor, concrete_uri(predictor, target), self._alias)
                    self._activate(current, trigger="admin")
            except Exception as error:
                self.metrics.reloads.labels(trigger="admin", outcome="failed").inc()
                logger.exception("reload of %s failed; still serving %s", uri, previous.uri)
                message = f"reload of {uri} failed ({error}); still serving {previous.uri}"
                raise ReloadError(message) from error
            self.state.set_target(self.deployment_id, current.uri, current.version)
            self._failed_target = None
        canary = self.rollout.model
        if canary is not None and canary.uri == current.uri:
            self.rollout.end("promoted", f"version {current.version} is the served model now")
        elif canary is not None and current.uri != previous.uri:
            # The comparison was against the champion that is gone: it no longer measures anything.
            self.rollout.end("aborted", f"the champion changed to {current.uri} during the rollout")
        if self.shadow is not None:
            self.reload_shadow(trigger="admin")
        return previous, current

    # --------------------------------------------------------------------------------------- shadow
    @property
    def shadow_key(self) -> str:
        """The model-target row every replica's shadow follows."""
        return f"{self.deployment_id}:shadow"

    def shadow_copy(self, ids: Sequence[str], titles: Sequence[str], descriptions: Sequence[str]) -> None:
        """Hand an answered request to the shadow (a queue append; never blocks, never raises)."""
        if self.shadow is None:
            return
        try:
            self.shadow.submit(ids, titles, descriptions)
        except Exception:  # the champion's answer must never depend on the shadow
            logger.exception("shadow: could not queue a copy")

    def reload_shadow(self, *, trigger: str) -> ServedModel | None:
        """Load what ``shadow_model_uri`` names now; a failure keeps the old shadow and never raises.

        A shadow that resolves to the served model itself (a challenger just promoted) is set idle:
        comparing a model with itself measures nothing.
        """
        uri = self.config.shadow_model_uri
        if self.shadow is None or uri is None:
            return None
        try:
            target = self.loader.resolve(uri)
            self.state.set_target(self.shadow_key, target, None)
            self._follow_shadow(target, trigger=trigger)
        except Exception as error:
            self.shadow_reason = f"{uri}: {error}"
            logger.warning("shadow: cannot load %s (%s); keeping the current shadow", uri, error)
        return self.shadow.model

    def _follow_shadow(self, target: str, *, trigger: str) -> None:
        assert self.shadow is not None
        current = self.shadow.model
        if target == self.model.uri:
            if current is not None:
                logger.info("shadow: %s is now the served model; shadow idle", target)
            self.shadow.model, self.shadow_reason = None, f"{target} is the served model"
            return
        if current is not None and current.uri == target:
            return
        model = load_warm(self.loader, target, self._shadow_alias)
        self.shadow.model, self.shadow_reason = model, None
        logger.info("replica %s shadows %s with %s (%s)", self.replica_id, self.model.uri, model.uri, trigger)

    def _sync_shadow(self) -> None:
        if self.shadow is None or self.config.shadow_model_uri is None:
            return
        target = self.state.get_target(self.shadow_key)
        if target is None:
            return
        current = self.shadow.model
        if (current is not None and current.uri == target[0]) or (
            current is None and target[0] == self.model.uri
        ):
            return
        failed = self._failed_shadow
        if failed is not None and failed[0] == target[0] and time.monotonic() < failed[1]:
            return  # it failed recently: retry later, not every sync
        try:
            self._follow_shadow(target[0], trigger="sync")
        except Exception as error:
            self._failed_shadow = (target[0], time.monotonic() + 30.0)
            self.shadow_reason = f"{target[0]}: {error}"
            logger.warning("shadow: cannot follow %s (%s)", target[0], error)

    def _activate(self, model: ServedModel, *, trigger: str) -> None:
        warm(model)
        self.model = model  # the switch: one reference assignment, atomic for every reader
        self.metrics.set_model(**model.ref())
        self.metrics.reloads.labels(trigger=trigger, outcome="ok").inc()
        logger.info("replica %s now serves %s (%s)", self.replica_id, model.uri, trigger)
        self.state.heartbeat(self.replica_id, self.deployment_id, model.uri, model.version)

    def report(self) -> None:
        """Record in the serving database that this replica is alive and which model it serves."""
        model = self.model  # read once: a switch may land between two reads
        self.state.heartbeat(self.replica_id, self.deployment_id, model.uri, model.version)

    def follow_targets(self) -> None:
        """Switch to the deployment's model, shadow and canary where they changed on another replica."""
        self._sync_shadow()
        self._sync_target()
        self.rollout.follow()

    def _sync_target(self) -> None:
        target = self.state.get_target(self.deployment_id)
        if target is None:
            self.state.claim_target(self.deployment_id, self.model.uri, self.model.version)
            return
        uri = target[0]
        if uri == self.model.uri:
            return
        failed = self._failed_target
        if failed is not None and failed[0] == uri and time.monotonic() < failed[1]:
            return  # it failed recently: retry later, not every sync
        if not self._reload_lock.acquire(blocking=False):
            return  # a reload is running here; it sets the target itself
        try:
            canary = self.rollout.model
            if canary is not None and canary.uri == uri:  # another replica promoted the canary
                self._activate(ServedModel(canary.predictor, uri, self._alias), trigger="sync")
            else:
                predictor = self.loader.load(uri)
                self._activate(ServedModel(predictor, uri, self._alias), trigger="sync")
        except Exception:
            self.metrics.reloads.labels(trigger="sync", outcome="failed").inc()
            self._failed_target = (uri, time.monotonic() + 30.0)
            logger.exception("could not switch to %s; still serving %s", uri, self.model.uri)
        finally:
            self._reload_lock.release()

    async def sync_forever(self) -> None:
        """Report every ``sync_interval_s`` and follow the deployment's targets as often, until cancelled.

        The two run on separate beats: following a target loads a model, which takes as long as the
        model takes, and a replica busy switching is still alive; a reload counts the live replicas by
        their reports, so a report held up behind a load would count that replica as gone.
        """
        async with asyncio.TaskGroup() as beats:
            beats.create_task(self._every_interval(self.report, "report"))
            beats.create_task(self._every_interval(self.follow_targets, "sync"))

    async def _every_interval(self, step: Callable[[], None], name: str) -> None:
        failures = 0
        while True:
            await asyncio.sleep(self.config.sync_interval_s)
            try:
                await asyncio.to_thread(step)
                failures = 0
            except Exception as error:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    logger.warning("replica %s failed (%d in a row): %s", name, failures, error)

    def replicas_on(self, uri: str) -> tuple[int, int]:
        """(live replicas, live replicas serving ``uri``)."""
        live = self.state.live_replicas(self.deployment_id, self.replica_max_age_s)
        return len(live), sum(1 for replica in live if replica.model_uri == uri)

    async def wait_for_replicas(self, uri: str) -> tuple[int, int]:
        """Wait (up to ``reload_timeout_s``) until every live replica serves ``uri``."""
        deadline = time.monotonic() + self.config.reload_timeout_s
        while True:
            total, on = await asyncio.to_thread(self.replicas_on, uri)
            if on >= total or time.monotonic() >= deadline:
                return total, on
            await asyncio.sleep(min(0.2, self.config.sync_interval_s / 4))

    # ---------------------------------------------------------------------------------- predictions
    def log_predictions(
        self,
        *,
        ids: Sequence[str],
        request_id: str | None,
        titles: Sequence[str],
        descriptions: Sequence[str],
        results: Sequence[dict[str, Any]],
        model: ServedModel,
        latency_ms: float,
    ) -> bool:
        """Queue one request's predictions for the log (never blocks)."""
        now = utcnow()
        rows = [
            {
                "id": prediction_id,
                "created_at": now,
                "request_id": request_id,
                "model_name": model.name,
                "model_version": model.version,
                "model_uri": model.uri,
                "title": title,
                "description": description,
                "tag": result["tag"],
                "confidence": float(result["confidence"]),
                "abstained": bool(result["abstained"]),
                "probabilities": result["probabilities"],
                "latency_ms": latency_ms,
                "replica": self.replica_id,
            }
            for prediction_id, title, description, result in zip(
                ids, titles, descriptions, results, strict=True
            )
        ]
        return self.store.writer.submit(rows)

    def find_prediction(self, prediction_id: str) -> bool:
        """Whether the prediction is in the log, allowing for rows still queued here or elsewhere."""
        if self.store.reader.prediction_exists(prediction_id):
            return True
        self.store.writer.flush(timeout=5.0)
        if self.store.reader.prediction_exists(prediction_id):
            return True
        total, _ = self.replicas_on(self.model.uri)
        if total <= 1:
            return False
        deadline = time.monotonic() + 2 * self.config.log_flush_interval_s + 0.5
        while time.monotonic() < deadline:  # another replica's writer may not have flushed yet
            time.sleep(0.1)
            if self.store.reader.prediction_exists(prediction_id):
                return True
        return False
