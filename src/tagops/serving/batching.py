"""Dynamic batching: concurrent requests go to ``predictor.predict`` together, in one call.

Ray Serve batches with ``@serve.batch`` (see :mod:`tagops.serving.deployment`); the uvicorn engine uses
:class:`AsyncBatcher`, which has the same semantics: requests are batched whole, up to ``max_items``
items, waiting at most ``wait_s`` for a batch to fill (0: take whatever queued while the previous batch
ran). Both call :func:`predict_batch`, which also isolates a request that makes the model fail, so one
bad request never fails the others in its batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagops.serving.metrics import ServingMetrics
    from tagops.serving.service import ServedModel

logger = logging.getLogger(__name__)

#: One HTTP request's items: (titles, descriptions).
BatchRequest = tuple[list[str], list[str]]


class InferenceThread:
    """The one thread a serving process runs model inference on (when inference is off the event loop).

    Not asyncio's shared default executor: torch's OpenMP runtime keeps a thread team per calling thread,
    so inference hopping between that executor's threads builds several teams whose idle threads spin
    while another team works. On 2 cores that made each transformer batch in a Ray Serve replica about
    1.5x slower than in process (measured: 38.8 ms against 26 ms per single item). Batches are run one
    at a time anyway, so one thread loses nothing.
    """

    def __init__(self) -> None:
        self._executor: Any = None

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` on the inference thread, awaited from the event loop."""
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tagops-inference")
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)


@dataclass(frozen=True)
class BatchAnswer:
    """Predictions for one request and the model that made them (``error`` set if the model failed)."""

    results: list[dict[str, Any]]
    model: ServedModel
    error: str | None = None


def items_in(requests: Sequence[BatchRequest]) -> int:
    """Items in a list of requests (the batch size that counts for the model)."""
    return sum(len(titles) for titles, _ in requests)


def predict_batch(
    model: ServedModel, requests: Sequence[BatchRequest], metrics: ServingMetrics | None = None
) -> list[BatchAnswer]:
    """Run every request's items through ``model`` in one ``predict`` call and split the answers."""
    titles = [title for request in requests for title in request[0]]
    descriptions = [text for request in requests for text in request[1]]
    started = time.perf_counter()
    try:
        results = model.predictor.predict(titles, descriptions)
        if len(results) != len(titles):
            raise RuntimeError(f"predictor returned {len(results)} answers for {len(titles)} items")
    except Exception:
        if len(requests) == 1:
            logger.exception("prediction failed for a request of %d items", len(titles))
            return [BatchAnswer([], model, error="the model failed on this request")]
        # Find the request that broke the batch; the others are answered.
        return [answer for request in requests for answer in predict_batch(model, [request], metrics)]
    if metrics is not None:
        metrics.batch_items.observe(len(titles))
        metrics.inference_seconds.observe(time.perf_counter() - started)
    answers, start = [], 0
    for request_titles, _ in requests:
        end = start + len(request_titles)
        answers.append(BatchAnswer(results[start:end], model))
        start = end
    return answers


class AsyncBatcher:
    """Collect concurrent requests and hand them to a blocking batch function (in a worker thread or not)."""

    def __init__(
        self,
        handle_batch: Callable[[list[BatchRequest]], list[BatchAnswer]],
        *,
        max_items: int,
        wait_s: float = 0.0,
        in_thread: bool = True,
    ) -> None:
        self.handle_batch = handle_batch
        self.max_items = max_items
        self.wait_s = wait_s
        self.in_thread = in_thread
        self._thread = InferenceThread()
        self._pending: deque[tuple[BatchRequest, asyncio.Future[BatchAnswer]]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, titles: list[str], descriptions: list[str]) -> BatchAnswer:
        """Predict one request's items as part of the next batch."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (e.g. a restarted server): start afresh
            self._loop, self._worker = loop, None
            self._pending.clear()
        future: asyncio.Future[BatchAnswer] = loop.create_future()
        self._pending.append(((titles, descriptions), future))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run())
        return await future

    def _take(self) -> list[tuple[BatchRequest, asyncio.Future[BatchAnswer]]]:
        batch: list[tuple[BatchRequest, asyncio.Future[BatchAnswer]]] = []
        items = 0
        while self._pending:
            request, future = self._pending[0]
            if batch and items + len(request[0]) > self.max_items:
                break
            self._pending.popleft()
            if not future.cancelled():
                batch.append((request, future))
                items += len(request[0])
        return batch

    async def _run(self) -> None:
        while self._pending:
            if self.wait_s > 0 and items_in([r for r, _ in self._pending]) < self.max_items:
                await asyncio.sleep(self.wait_s)
            batch = self._take()
            if not batch:
                continue
            requests = [request for request, _ in batch]
            try:
                if self.in_thread:
                    answers = await self._thread.run(self.handle_batch, requests)
                else:  # blocks the loop for one batch; requests arriving meanwhile form the next one
                    answers = self.handle_batch(requests)
                    await asyncio.sleep(0)  # let them in before the next batch is taken
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
