from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from tagops.config import ScheduleConfig, SimulateConfig, parse_period
from tagops.errors import RegistryError
from tagops.workloads.schedule import (
    Schedule,
    TurnHeldError,
    read_records,
    registry_lease,
    run_schedule,
    run_turn,
)

pytestmark = pytest.mark.unit


class FakeClock:
    """Monotonic time that moves only when a turn works or the scheduler waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def make_schedule(tmp_path: Path, turn: Any, clock: FakeClock | None = None, **options: Any) -> Schedule:
    clock = clock or FakeClock()
    return Schedule(
        turn=turn,
        every_s=options.pop("every_s", 60.0),
        lock_path=tmp_path / "loop.lock",
        log_path=tmp_path / "logs" / "loop.jsonl",
        clock=clock,
        wait=clock.wait,
        **options,
    )


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("15m", 900.0), ("1.5h", 5400.0), ("1d", 86400.0), (" 2 m ", 120.0)]
)
def test_periods_parse(text: str, seconds: float) -> None:
    assert parse_period(text) == seconds


@pytest.mark.parametrize("text", ["15", "m", "0m", "-5m", "1w", "1h30m", ""])
def test_bad_periods_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="a period is a positive number and a unit"):
        parse_period(text)
    with pytest.raises(ValueError, match="every"):
        ScheduleConfig(every=text)


def test_the_loop_config_file_has_a_schedule() -> None:
    from tagops.config import load_config

    cfg = load_config(SimulateConfig, Path(__file__).parents[2] / "configs" / "loop.yaml")
    assert cfg.schedule.every_s == 900.0 and cfg.schedule.pipeline is True


def test_turns_start_one_period_apart_and_each_is_a_log_line(tmp_path: Path) -> None:
    clock = FakeClock()
    starts: list[float] = []

    def turn() -> dict[str, Any]:
        starts.append(clock.now)
        clock.now += 10.0  # the turn's work
        return {"n": len(starts)}

    records = run_schedule(make_schedule(tmp_path, turn, clock), max_turns=3)
    assert starts == [0.0, 60.0, 120.0]
    assert clock.waits == [50.0, 50.0]  # the period counts from a turn's start, not its end
    assert [r.status for r in records] == ["done"] * 3
    logged = read_records(tmp_path / "logs" / "loop.jsonl")
    assert [r["result"] for r in logged] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [r["turn"] for r in logged] == [1, 2, 3]
    assert all(r["started_at"] <= r["finished_at"] for r in logged)


def test_a_turn_longer_than_the_period_delays_the_next_instead_of_overlapping(tmp_path: Path) -> None:
    clock = FakeClock()
    starts: list[float] = []

    def turn() -> dict[str, Any]:
        starts.append(clock.now)
        clock.now += 150.0 if len(starts) == 1 else 1.0
        return {}

    run_schedule(make_schedule(tmp_path, turn, clock), max_turns=3)
    assert starts == [0.0, 150.0, 210.0]  # the second right after the first; never two at once


def test_a_failing_turn_is_logged_and_the_next_runs_on_time(tmp_path: Path) -> None:
    calls = []

    def turn() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the registry is down")
        return {"ok": True}

    records = run_schedule(make_schedule(tmp_path, turn), max_turns=3)
    assert [r.status for r in records] == ["done", "failed", "done"]
    assert records[1].error == "RuntimeError: the registry is down" and records[1].result is None
    logged = read_records(tmp_path / "logs" / "loop.jsonl")
    assert logged[1]["status"] == "failed" and "registry is down" in logged[1]["error"]


def test_a_turn_is_skipped_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    ran = []
    schedule = make_schedule(tmp_path, lambda: ran.append(1) or {})
    with FileLock(str(tmp_path / "loop.lock")):  # as another `tagops loop run` on this home would
        held = run_turn(schedule, 1)
    assert held.status == "skipped" and "loop.lock" in str(held.error) and not ran
    assert run_turn(schedule, 2).status == "done" and ran == [1]
    assert [r["status"] for r in read_records(tmp_path / "logs" / "loop.jsonl")] == ["skipped", "done"]


def test_two_schedulers_on_one_home_never_run_a_turn_at_the_same_time(tmp_path: Path) -> None:
    running = threading.Lock()
    overlaps = []

    def turn() -> dict[str, Any]:
        if not running.acquire(blocking=False):
            overlaps.append(1)
            return {}
        try:
            time.sleep(0.05)
        finally:
            running.release()
        return {}

    results: list[list[str]] = [[], []]

    def scheduler(index: int) -> None:
        schedule = Schedule(
            turn=turn, every_s=0.01, lock_path=tmp_path / "loop.lock", log_path=tmp_path / "loop.jsonl"
        )
        results[index] = [r.status for r in run_schedule(schedule, max_turns=10)]

    threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not overlaps
    statuses = results[0] + results[1]
    assert len(statuses) == 20 and "skipped" in statuses and "done" in statuses
    assert len(read_records(tmp_path / "loop.jsonl")) == 20


def test_a_held_registry_lease_skips_the_turn_but_a_registry_error_inside_it_fails(tmp_path: Path) -> None:
    class Registry:
        def __init__(self, held: bool) -> None:
            self.held = held
            self.ttl: float | None = None

        @contextmanager
        def lease(self, purpose: str, *, ttl_s: float, timeout_s: float) -> Iterator[None]:
            assert purpose == "loop" and timeout_s == 0.0
            self.ttl = ttl_s
            if self.held:
                raise RegistryError("the loop lease (tagops.lease.loop) is held by another process")
            yield

    held = make_schedule(tmp_path, lambda: {}, lease=lambda: registry_lease(Registry(True), ttl_s=60.0))
    assert run_turn(held, 1).status == "skipped"

    def broken() -> dict[str, Any]:
        raise RegistryError("no version has the alias champion")

    free = Registry(False)
    failing = make_schedule(tmp_path, broken, lease=lambda: registry_lease(free, ttl_s=60.0))
    record = run_turn(failing, 2)
    assert record.status == "failed" and "champion" in str(record.error) and free.ttl == 60.0


def test_a_stop_request_ends_the_loop_during_its_wait(tmp_path: Path) -> None:
    schedule = Schedule(
        turn=lambda: {}, every_s=3600.0, lock_path=tmp_path / "l.lock", log_path=tmp_path / "l.jsonl"
    )
    threading.Timer(0.2, schedule.stop.set).start()
    started = time.monotonic()
    records = run_schedule(schedule)
    assert len(records) == 1 and time.monotonic() - started < 10


def test_the_log_reader_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "loop.jsonl"
    path.write_text(json.dumps({"turn": 1}) + "\n" + '{"turn": 2, "sta', encoding="utf-8")
    assert read_records(path) == [{"turn": 1}]
    assert read_records(tmp_path / "absent.jsonl") == []


def test_turn_held_error_is_a_skip_not_a_failure(tmp_path: Path) -> None:
    def turn() -> dict[str, Any]:
        raise TurnHeldError("held")

    assert run_turn(make_schedule(tmp_path, turn), 1).status == "skipped"
