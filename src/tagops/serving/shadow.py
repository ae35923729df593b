"""Shadow evaluation: a second model scores copies of live requests, off the request path.

The champion answers a request and the app hands a copy of its items to :meth:`ShadowScorer.submit`,
which only appends to a bounded in-memory queue (it never blocks, never raises, and a full queue skips
the copy, counted). One background thread per replica takes the queued items in batches, runs the
shadow model, and queues its answers for the ``shadow_predictions`` table through a prediction-log
writer of its own, so a slow or failing shadow can delay or lose only shadow rows. The shadow's answers
are never returned to a client; ``tagops shadow report`` compares them with the champion's.

The thread runs at a lower CPU priority where the OS allows (Linux: per-thread nice), so on a small
machine the shadow yields to the requests being answered.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tagops.predlog.schema import utcnow
from tagops.predlog.writer import wait_drained

if TYPE_CHECKING:
    from tagops.predlog.writer import LogWriter
    from tagops.serving.metrics import ServingMetrics
    from tagops.serving.model import ServedModel

logger = logging.getLogger(__name__)

#: Niceness added to the shadow thread (Linux applies it to the one thread).
SHADOW_NICENESS = 10


@dataclass(frozen=True)
class ShadowJob:
    """One request's items, identified by the champion's prediction ids."""

    ids: list[str]
    titles: list[str]
    descriptions: list[str]


_STOP = object()


class ShadowScorer:
    """Scores copies of requests with :attr:`model` (``None``: idle) and logs the answers."""

    def __init__(
        self,
        *,
        store: LogWriter,
        replica_id: str,
        max_items: int,
        batch_items: int = 64,
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.store = store
        self.replica_id = replica_id
        self.max_items = max_items
        self.batch_items = batch_items
        self.metrics = metrics
        #: The shadow model; replaced by one assignment, read once per batch.
        self.model: ServedModel | None = None
        self.scored_items = 0
        self.skipped_items = 0
        self.failed_items = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._queued_items = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._last_skip_log = 0.0

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the shadow log writer and the scoring thread (idempotent)."""
        self.store.start()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopped = False
            self._thread = threading.Thread(target=self._run, name="tagops-shadow", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Score what is queued, stop the thread, write the shadow rows."""
        with self._lock:
            thread, self._stopped = self._thread, True
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout)
            if thread.is_alive():
                logger.error("shadow: still scoring after %.0fs; %d items not scored", timeout, self.pending)
        self.store.stop(timeout)

    @property
    def alive(self) -> bool:
        """Whether the scoring thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Items queued for the shadow model."""
        return self._queued_items

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued item is scored and its row written; ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        if not wait_drained(self._queue, deadline, lambda: self.alive):
            return False
        return self.store.flush(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------------------------ the copy
    def submit(self, ids: Sequence[str], titles: Sequence[str], descriptions: Sequence[str]) -> bool:
        """Queue a copy of one answered request; never blocks or raises. ``False`` when skipped."""
        count = len(ids)
        if not count or self.model is None:
            return False
        with self._lock:
            refused = self._stopped or self._queued_items + count > self.max_items
            if not refused:
                self._queued_items += count
        if refused:
            self._count("skipped", count)
            now = time.monotonic()
            if now - self._last_skip_log >= 10.0:  # a saturated shadow would otherwise log per request
                self._last_skip_log = now
                logger.warning(
                    "shadow: skipped %d items (queue of %d full or stopped); %d skipped in total",
                    count,
                    self.max_items,
                    self.skipped_items,
                )
            return False
        self._queue.put(ShadowJob(list(ids), list(titles), list(descriptions)))
        return True

    def _count(self, outcome: str, count: int) -> None:
        if outcome == "scored":
            self.scored_items += count
        elif outcome == "skipped":
            self.skipped_items += count
        else:
            self.failed_items += count
        if self.metrics is not None:
            self.metrics.shadow_items.labels(outcome=outcome).inc(count)

    # ------------------------------------------------------------------------------------- scoring
    def _run(self) -> None:
        # Linux: a thread's nice value is its own; elsewhere this changes nothing or fails.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICENESS)
        stopping = False
        while not stopping:
            item = self._queue.get()
            items = [item]
            jobs: list[ShadowJob] = [] if item is _STOP else [item]
            stopping = item is _STOP
            while sum(len(j.ids) for j in jobs) < self.batch_items:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                items.append(more)
                if more is _STOP:
                    stopping = True
                else:
                    jobs.append(more)
            try:
                if jobs:
                    self._score(jobs)
            finally:
                with self._lock:
                    self._queued_items -= sum(len(j.ids) for j in jobs)
                for _ in items:
                    self._queue.task_done()
            if stopping and not self._queue.empty():
                stopping = False  # copies queued behind the stop marker are still scored
                self._queue.put(_STOP)

    def _score(self, jobs: list[ShadowJob]) -> None:
        model = self.model  # one model for the whole batch, even if a reload swaps it meanwhile
        count = sum(len(j.ids) for j in jobs)
        if model is None:
            self._count("skipped", count)
            return
        titles = [t for j in jobs for t in j.titles]
        descriptions = [d for j in jobs for d in j.descriptions]
        started = time.perf_counter()
        try:
            results = model.predictor.predict(titles, descriptions)
            if len(results) != count:
                raise RuntimeError(f"shadow model returned {len(results)} answers for {count} items")
        except Exception:
            logger.exception("shadow: %s failed on a batch of %d items", model.uri, count)
            self._count("failed", count)
            return
        latency_ms = (time.perf_counter() - started) * 1000
        now = utcnow()
        ids = [i for j in jobs for i in j.ids]
        rows = [
            {
                "id": uuid.uuid4().hex,
                "prediction_id": prediction_id,
                "created_at": now,
                "model_name": model.name,
                "model_version": model.version,
                "model_uri": model.uri,
                "tag": result["tag"],
                "confidence": float(result["confidence"]),
                "abstained": bool(result["abstained"]),
                "probabilities": result["probabilities"],
                "latency_ms": latency_ms,
                "replica": self.replica_id,
            }
            for prediction_id, result in zip(ids, results, strict=True)
        ]
        self._count("scored", count)
        self.store.submit(rows)
