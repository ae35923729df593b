"""One replica's part in the deployment's canary rollout: the loaded canary, its share, its counts.

:meth:`CanaryRollout.start` loads and warms the challenger beside the champion and records the rollout
in the serving database; every other replica follows that row (:meth:`CanaryRollout.follow`, on its
sync beat). :meth:`CanaryRollout.route` sends a request to the canary when the hash of its text falls
in the rollout's share, so a request sent again gets the same model (sticky) and the share holds across
replicas. Each replica counts the requests it answered per side and adds them to the rollout's row on
its beat, so the comparison covers every replica. Ending a rollout (promoted, aborted) drops the
canary; no request fails, as each request reads the canary reference once.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tagops.errors import TagopsError
from tagops.model_ref import ModelRef
from tagops.serving.model import ModelLoader, ServedModel, load_warm

if TYPE_CHECKING:
    from tagops.serving.metrics import ServingMetrics
    from tagops.serving.state import RolloutRecord, ServingState

logger = logging.getLogger(__name__)


class RolloutError(TagopsError):
    """A rollout cannot start or change (no such model, it is the champion, nothing to abort)."""


def canary_bucket(titles: Sequence[str], descriptions: Sequence[str]) -> float:
    """Where a request's text falls in ``[0, 100)``: a stable hash, so a request sent again routes alike."""
    digest = hashlib.blake2b(digest_size=8)
    for title, description in zip(titles, descriptions, strict=True):
        digest.update(title.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1e")
        digest.update(description.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return int.from_bytes(digest.digest(), "big") % 10_000 / 100


class CanaryRollout:
    """The canary a replica routes a share of requests to, and the counts it owes the rollout's row."""

    def __init__(
        self,
        *,
        state: ServingState,
        deployment_id: str,
        replica_id: str,
        loader: ModelLoader,
        metrics: ServingMetrics,
        champion: Callable[[], ServedModel],
    ) -> None:
        self.state = state
        self.deployment_id = deployment_id
        self.replica_id = replica_id
        self.loader = loader
        self.metrics = metrics
        #: The replica's served model at the time of asking (it changes on reloads).
        self.champion = champion
        #: The challenger answering ``weight`` % of requests during a rollout (``None``: none).
        self.model: ServedModel | None = None
        self.weight = 0.0
        #: Held while the canary changes (start, end, a load that follows the rollout); re-entrant, since
        #: ``abort`` ends the rollout it holds it for.
        self._lock = threading.RLock()
        self._failed: tuple[str, float] | None = None
        #: Requests answered and failed per side since the last sync wrote them to the rollout's row.
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        # Held while counts taken from ``_counts`` are on their way to the row, so a status read that
        # syncs first sees a beat's write that was in flight, not the row before it.
        self._flush_lock = threading.Lock()

    def route(self, titles: Sequence[str], descriptions: Sequence[str]) -> ServedModel | None:
        """The canary if this request falls in the rollout's share, else ``None`` (the champion answers)."""
        canary, weight = self.model, self.weight
        if canary is None or weight <= 0:
            return None
        return canary if canary_bucket(titles, descriptions) < weight else None

    def count(self, side: str, *, failed: bool) -> None:
        """Count one request for the rollout's comparison (``side``: ``champion`` or ``canary``)."""
        self.metrics.routed.labels(side=side, outcome="failed" if failed else "answered").inc()
        if self.model is None and side == "champion":
            return
        with self._counts_lock:
            self._counts[f"{side}_{'failed' if failed else 'answered'}"] += 1

    def start(self, uri: str, weight: float) -> RolloutRecord:
        """Serve ``uri`` to ``weight`` % of requests on every replica (a running rollout of it: new weight).

        Raises:
            RolloutError: ``uri`` is the served model, or cannot be loaded (nothing is changed).

        """
        with self._lock:
            try:
                target = self.loader.resolve(uri)
            except Exception as error:
                raise RolloutError(f"cannot resolve {uri}: {error}") from error
            champion = self.champion()
            if target == champion.uri:
                raise RolloutError(f"{uri} is {target}, the served model: nothing to roll out")
            current = self.state.get_rollout(self.deployment_id)
            if self.model is not None and self.model.uri == target and current is not None and current.active:
                self.state.set_rollout_weight(self.deployment_id, weight)
                self.weight = weight
                logger.info("rollout of %s now at %.1f %%", target, weight)
                return self.state.get_rollout(self.deployment_id) or current
            try:
                canary = self._load(target)
            except Exception as error:
                raise RolloutError(f"cannot load {target}: {error}") from error
            self.flush_counts()
            record = self.state.start_rollout(
                self.deployment_id,
                model_uri=canary.uri,
                version=canary.version,
                champion_uri=champion.uri,
                champion_version=champion.version,
                weight=weight,
            )
            with self._counts_lock:
                self._counts.clear()
            self.model, self.weight = canary, weight
            self.metrics.set_canary(canary.version, weight)
            logger.info("rollout: %s answers %.1f %% of requests", canary.uri, weight)
            return record

    def abort(self, reason: str = "aborted by an admin") -> RolloutRecord:
        """Send every request to the champion again and mark the rollout aborted.

        Raises:
            RolloutError: no rollout is active.

        """
        with self._lock:
            current = self.state.get_rollout(self.deployment_id)
            if current is None or not current.active:
                raise RolloutError("no rollout is active")
            record = self.end("aborted", reason)
        assert record is not None
        return record

    def end(self, state: str, reason: str) -> RolloutRecord | None:
        """Write the counts, mark the rollout ``state`` (``promoted``, ``aborted``) and drop the canary."""
        with self._lock:
            self.flush_counts()
            record = self.state.end_rollout(self.deployment_id, state, reason)
            self._drop(state)
            return record

    def flush_counts(self) -> None:
        """Add this replica's counts to the rollout's row now (a status read should see them)."""
        with self._flush_lock:
            with self._counts_lock:
                counts, self._counts = dict(self._counts), Counter()
            try:
                self.state.add_rollout_counts(self.deployment_id, counts)
            except Exception:
                with self._counts_lock:
                    self._counts.update(counts)  # kept for the next sync
                raise

    def follow(self) -> None:
        """Follow the deployment's rollout: load its canary, take its weight, or drop the canary."""
        if self.model is not None or self._counts:
            self.flush_counts()
        record = self.state.get_rollout(self.deployment_id)
        if record is None or not record.active:
            if self.model is not None:
                self._drop(record.state if record is not None else "no rollout")
            return
        if self.model is not None and self.model.uri == record.model_uri:
            self.weight = record.weight
            return
        failed = self._failed
        if failed is not None and failed[0] == record.model_uri and time.monotonic() < failed[1]:
            return
        if not self._lock.acquire(blocking=False):
            return
        try:
            # Read again under the lock: a rollout ended since the read above (a reload to another
            # champion) must not have its canary loaded back.
            current = self.state.get_rollout(self.deployment_id)
            if current is None or not current.active or current.model_uri != record.model_uri:
                return
            canary = self._load(record.model_uri)
            self.model, self.weight = canary, record.weight
            self.metrics.set_canary(canary.version, record.weight)
            logger.info("replica %s follows the rollout of %s", self.replica_id, canary.uri)
        except Exception:
            self._failed = (record.model_uri, time.monotonic() + 30.0)
            logger.exception("could not load the canary %s", record.model_uri)
        finally:
            self._lock.release()

    def _drop(self, why: str) -> None:
        if self.model is not None:
            logger.info(
                "rollout of %s ended (%s); every request to %s", self.model.uri, why, self.champion().uri
            )
        self.model, self.weight = None, 0.0
        self.metrics.set_canary(None, 0.0)

    def _load(self, target: str) -> ServedModel:
        canary = self.model
        if canary is not None and canary.uri == target:
            return canary
        return load_warm(self.loader, target, ModelRef.parse(target).alias)


__all__ = ["CanaryRollout", "RolloutError", "canary_bucket"]
