"""The uvicorn engine stops when its prediction log writer dies, so that its supervisor restarts it."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from tagops.serving.server import watch_log_writer

pytestmark = pytest.mark.unit


def service(*, ready: bool, alive: bool) -> SimpleNamespace:
    return SimpleNamespace(ready=ready, store=SimpleNamespace(writer=SimpleNamespace(alive=alive)))


def test_a_dead_writer_stops_the_server_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    served = service(ready=True, alive=True)
    server = SimpleNamespace(should_exit=False)

    async def run() -> bool:
        watch = asyncio.create_task(watch_log_writer(served, server, interval_s=0.01))
        await asyncio.sleep(0.05)
        assert not server.should_exit  # a live writer: nothing happens
        served.store.writer.alive = False
        return await asyncio.wait_for(watch, 1)

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(run()) is True
    assert server.should_exit
    assert "prediction log writer has stopped" in caplog.text


def test_a_server_stopping_for_another_reason_or_not_ready_is_left_alone() -> None:
    server = SimpleNamespace(should_exit=False)
    not_ready = service(ready=False, alive=False)  # before start-up the writer is not running yet

    async def run() -> bool:
        watch = asyncio.create_task(watch_log_writer(not_ready, server, interval_s=0.01))
        await asyncio.sleep(0.05)
        server.should_exit = True
        return await asyncio.wait_for(watch, 1)

    assert asyncio.run(run()) is False
