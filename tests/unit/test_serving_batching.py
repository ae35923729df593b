"""Dynamic batching: whole requests per batch, bounded by items; one failing request fails alone."""

from __future__ import annotations

import asyncio

import pytest

from tagops.serving.batching import AsyncBatcher, BatchAnswer, BatchRequest, items_in, predict_batch
from tagops.serving.metrics import ServingMetrics
from tagops.serving.service import ServedModel
from tests.unit.serving_fakes import FakePredictor

pytestmark = pytest.mark.unit


def model(delay_s: float = 0.0) -> ServedModel:
    return ServedModel(FakePredictor(1, delay_s=delay_s), "models:/tagops/1", "champion")


def test_predict_batch_calls_the_model_once_and_splits_in_order() -> None:
    served = model()
    requests: list[BatchRequest] = [(["text a", "image b"], ["", ""]), (["docker c"], [""])]
    metrics = ServingMetrics("r")
    answers = predict_batch(served, requests, metrics)
    assert served.predictor.calls == [3]  # type: ignore[attr-defined]
    assert [[r["tag"] for r in a.results] for a in answers] == [
        ["natural-language-processing", "computer-vision"],
        ["mlops"],
    ]
    assert all(a.model is served and a.error is None for a in answers)
    assert "tagops_predict_batch_items_sum 3.0" in metrics.render().decode()
    assert items_in(requests) == 3


def test_predict_batch_isolates_the_request_that_fails() -> None:
    answers = predict_batch(model(), [(["text"], [""]), (["explode"], [""]), (["image"], [""])])
    assert [a.error is None for a in answers] == [True, False, True]
    assert "secret" not in (answers[1].error or "")


def test_async_batcher_batches_whole_requests_up_to_max_items() -> None:
    served = model(delay_s=0.02)
    batches: list[list[int]] = []

    def handle(requests: list[BatchRequest]) -> list[BatchAnswer]:
        batches.append([len(titles) for titles, _ in requests])
        return predict_batch(served, requests)

    batcher = AsyncBatcher(handle, max_items=5, wait_s=0.0)

    async def run() -> list[BatchAnswer]:
        return await asyncio.gather(*(batcher.submit(["text"] * n, [""] * n) for n in (1, 2, 3, 2, 1, 4)))

    answers = asyncio.run(run())
    assert [len(a.results) for a in answers] == [1, 2, 3, 2, 1, 4]
    assert all(sum(batch) <= 5 for batch in batches)
    assert sorted(n for batch in batches for n in batch) == [1, 1, 2, 2, 3, 4]
    assert len(batches) < 6  # some requests shared a call
    # a new event loop (a restarted server) gets a fresh queue
    assert len(asyncio.run(run())) == 6


def test_async_batcher_passes_handler_errors_to_every_waiting_request() -> None:
    def broken(requests: list[BatchRequest]) -> list[BatchAnswer]:
        raise RuntimeError("down")

    batcher = AsyncBatcher(broken, max_items=8, wait_s=0.001)

    async def run() -> list[object]:
        return await asyncio.gather(*(batcher.submit(["t"], [""]) for _ in range(3)), return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(run()))
