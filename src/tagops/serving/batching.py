"""Dynamic batching: concurrent requests go to ``predictor.predict`` together, in one call.

Ray Serve batches with ``@serve.batch`` (see :mod:`tagops.serving.ray.deployment`); the uvicorn engine uses
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tagops.data.clean import MODEL_TEXT_CHARS

if TYPE_CHECKING:
    from tagops.serving.metrics import ServingMetrics
    from tagops.serving.model import ServedModel

logger = logging.getLogger(__name__)

#: One HTTP request's items: (titles, descriptions).
BatchRequest = tuple[list[str], list[str]]

#: Event-loop turns :class:`BatchGate` gives after a batch of one it predicted itself, before that batch
#: ends: one to read the sockets, the rest for the new requests to pass the server's and the app's
#: layers and reach the gate. Without them, closed-loop clients take turns in batches of one; a turn
#: costs far less than the time until the next lone request arrives (figures: ``benchmarks/serve.py``).
SETTLE_ITERATIONS = 4


class InferenceThread:
    """The one thread a serving process runs model inference on (when inference is off the event loop).

    Not asyncio's shared default executor: torch's OpenMP runtime keeps a thread team per calling thread,
    so inference hopping between that executor's threads builds several teams whose idle threads spin
    while another team works, which makes each transformer batch in a Ray Serve replica markedly slower
    than in process (``benchmarks/serve.py``). Batches are run one at a time anyway, so one thread loses
    nothing.
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


#: ``infer(titles, descriptions)``: the items of one request, predicted as part of a batch.
Infer = Callable[[list[str], list[str]], Awaitable[BatchAnswer]]


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


def item_chars(title: str, description: str) -> int:
    """Characters of one item's text a model reads (title and description; at most ``MODEL_TEXT_CHARS``)."""
    return min(len(title) + len(description) + 1, MODEL_TEXT_CHARS)


def model_chars(titles: Sequence[str], descriptions: Sequence[str]) -> int:
    """Characters of the items' text a model reads."""
    return sum(item_chars(t, d) for t, d in zip(titles, descriptions, strict=True))


def turns(titles: list[str], descriptions: list[str], turn_chars: int) -> list[BatchRequest]:
    """The items in order, in runs of at most ``turn_chars`` model characters (at least one item each)."""
    runs: list[BatchRequest] = []
    size = turn_chars + 1
    for title, description in zip(titles, descriptions, strict=True):
        chars = item_chars(title, description)
        if size + chars > turn_chars:
            runs.append(([], []))
            size = 0
        runs[-1][0].append(title)
        runs[-1][1].append(description)
        size += chars
    return runs


async def predict_in_turns(
    model: ServedModel,
    titles: list[str],
    descriptions: list[str],
    *,
    turn_chars: int,
    thread: InferenceThread | None = None,
    metrics: ServingMetrics | None = None,
) -> BatchAnswer:
    """Predict a large request a run of items at a time, leaving the event loop free between runs.

    After each run the request waits as long as the run took, so the loop is free at least half the
    time: other clients' requests are batched and answered, and health checks answered, while it goes
    on. One request with a lot of text then costs other clients at most one run's time (bounded by
    ``turn_chars``), not the whole request's; it takes about twice as long itself. One model answers
    every run (a reload meanwhile applies to the next request). With ``thread``, runs are predicted on
    that inference thread, else on the event loop.
    """
    if metrics is not None:
        metrics.in_turns.inc()
    results: list[dict[str, Any]] = []
    runs = turns(titles, descriptions, turn_chars)
    for index, run in enumerate(runs):
        started = time.perf_counter()
        if thread is None:
            (answer,) = predict_batch(model, [run], metrics)
        else:
            (answer,) = await thread.run(predict_batch, model, [run], metrics)
        if answer.error is not None:
            return BatchAnswer([], model, error=answer.error)
        results.extend(answer.results)
        if index < len(runs) - 1:
            await asyncio.sleep(time.perf_counter() - started)
    return BatchAnswer(results, model)


class AsyncBatcher:
    """Collect concurrent requests and hand them to a blocking batch function (in a worker thread or not)."""

    def __init__(
        self,
        handle_batch: Callable[[list[BatchRequest]], list[BatchAnswer]],
        *,
        max_items: int,
        wait_s: float = 0.0,
        in_thread: bool = True,
        thread: InferenceThread | None = None,
    ) -> None:
        self.handle_batch = handle_batch
        self.max_items = max_items
        self.wait_s = wait_s
        self.in_thread = in_thread
        self._thread = thread or InferenceThread()
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


class BatchGate:
    """Admission in front of the batcher that keeps closed-loop clients in one batch.

    Clients that send their next request as soon as they have an answer (load generators, pipelines, a
    crawler with N workers) form a closed loop. With a batcher that takes whatever is queued when the
    previous batch ends, such clients can split into two cohorts that take turns: the requests that
    arrived during batch A make batch B on their own, A's clients come back during B and make the next
    batch, and so on, each batch half the size it could be, and throughput falls with it (Ray Serve with
    the transformer falls into that state in some runs of ``benchmarks/serve.py``).

    The gate holds requests while a batch is running, and when it ends, expects the clients it answered
    to come back: it releases everything held once as many requests wait as that batch had plus those
    already waiting then, or once ``max_items`` items wait (a full batch), or after ``hold_fraction`` of
    the ended batch's duration, whichever comes first. A lone client is never held (nothing runs, one
    request expected); a hold that ends with nobody waiting expects one request again. Traffic from
    independent clients that do not come back waits up to that fraction more per batch; 0 turns the gate
    off (``ServeConfig.batch_hold_fraction``).

    A request released by itself while nothing else is released and unanswered is a batch of one that
    no other request can join (the gate holds them until it ends), so it needs no batcher: with
    ``alone`` given to :meth:`wrap`, the gate predicts it at once instead. That skips the batcher's
    trips through the event loop (Ray's ``@serve.batch`` queue, its wait, its batch task and the
    futures back), a noticeable share of a single-item transformer prediction. ``alone`` blocks the
    event loop for the prediction, as inference on the loop does anyway; afterwards the gate lets the loop run
    :data:`SETTLE_ITERATIONS` times before that batch ends, so requests that reached the server
    meanwhile are read and held, and counted among the clients to wait for, as after a batched call.
    """

    def __init__(
        self,
        *,
        max_items: int,
        hold_fraction: float,
        on_release: Callable[[str, float, int], None] | None = None,
    ) -> None:
        """A gate for batches of up to ``max_items`` items.

        ``on_release(reason, held_s, requests)`` is called per release: reason is target, full or
        deadline; held_s how long after the previous batch ended its first request was held (0: not held).
        """
        self.max_items = max_items
        self.hold_fraction = hold_fraction
        self.on_release = on_release
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reset()

    def _reset(self) -> None:
        self._waiting: deque[tuple[asyncio.Future[bool], int, float]] = deque()  # future, items, arrived
        self._waiting_items = 0
        self._outstanding = 0  # released requests not yet answered
        self._released = 0  # requests in the last release
        self._target = 1  # requests expected before the next release
        self._released_at = 0.0
        self._ended_at: float | None = None  # when the last batch ended (a hold is on from then)
        self._timer: asyncio.TimerHandle | None = None

    @property
    def target(self) -> int:
        """Requests the gate waits for before releasing (while no batch runs)."""
        return self._target

    @property
    def waiting(self) -> int:
        """Requests held at the gate now."""
        return len(self._waiting)

    def wrap(
        self,
        infer: Callable[[list[str], list[str]], Awaitable[BatchAnswer]],
        alone: Callable[[list[str], list[str]], BatchAnswer] | None = None,
    ) -> Callable[[list[str], list[str]], Awaitable[BatchAnswer]]:
        """``infer`` behind this gate; ``alone``, if given, predicts a batch of one without ``infer``."""

        async def gated(titles: list[str], descriptions: list[str]) -> BatchAnswer:
            by_itself = await self.admit(len(titles))
            try:
                if by_itself and alone is not None:
                    answer = alone(titles, descriptions)
                    for _ in range(SETTLE_ITERATIONS):
                        await asyncio.sleep(0)
                    return answer
                return await infer(titles, descriptions)
            finally:
                self.finished()

        return gated

    async def admit(self, items: int) -> bool:
        """Return when a request of ``items`` items may go to the batcher; then call :meth:`finished`.

        Returns whether the request was released by itself with nothing else released and unanswered:
        a batch of one that no other request can join until :meth:`finished`.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a restarted server, a test client): start afresh
            if self._timer is not None:
                self._timer.cancel()
            self._loop = loop
            self._reset()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((future, items, time.perf_counter()))
        self._waiting_items += items
        if self._outstanding == 0:
            self._release_if_due()
        if future.done():  # released at once: no trip through the event loop
            return future.result()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # released (and counted) just before
                self.finished()
            else:
                self._forget(future)
            raise

    def finished(self) -> None:
        """A released request has its answer (or failed): the batch ends with the last of them."""
        self._outstanding -= 1
        if self._outstanding > 0:
            return
        self._outstanding = 0
        now = time.perf_counter()
        self._ended_at = now
        self._target = self._released + len(self._waiting)
        self._release_if_due()
        if self._outstanding == 0 and self._loop is not None:
            self._timer = self._loop.call_later(
                (now - self._released_at) * self.hold_fraction, self._release, "deadline"
            )

    def _release_if_due(self) -> None:
        if len(self._waiting) >= self._target:
            self._release("target")
        elif self._waiting_items >= self.max_items:
            self._release("full")

    def _release(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        futures = [future for future, _, _ in self._waiting if not future.done()]
        first_arrived = self._waiting[0][2] if self._waiting else 0.0
        self._waiting.clear()
        self._waiting_items = 0
        if not futures:  # nobody came back within the hold: expect one request, as when idle
            self._target, self._ended_at = 1, None
            return
        now = time.perf_counter()
        if self.on_release is not None:
            # what the gate added: the time since the batch ended that the first request was held
            held = 0.0 if self._ended_at is None else now - max(self._ended_at, first_arrived)
            self.on_release(reason, held, len(futures))
        alone = len(futures) == 1 and self._outstanding == 0
        self._outstanding += len(futures)
        self._released, self._released_at, self._ended_at = len(futures), now, None
        for future in futures:
            future.set_result(alone)

    def _forget(self, future: asyncio.Future[bool]) -> None:
        for index, (waiting, items, _) in enumerate(self._waiting):
            if waiting is future:
                del self._waiting[index]
                self._waiting_items -= items
                return
