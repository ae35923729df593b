"""Promotion under the lock: concurrent gates leave one champion; a crash at any step leaves a state that
``rollback`` and the next ``promote`` handle; a torn history line is skipped and never swallows the next."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tagops.config import EvalConfig
from tagops.errors import RegistryError
from tagops.workloads import promote as promote_module
from tagops.workloads.promote import promote, promotion_lock, read_history, rollback
from tests.unit.test_gate import GATE, FakeRegistry, report

pytestmark = pytest.mark.unit


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Champion 1 (holdout F1 0.78); versions 2 and 3 both better (0.90); models load as no-ops."""
    from tagops.inference.predictor import Predictor
    from tests.unit.test_behaviour import FakePredictor

    monkeypatch.setattr(
        promote_module, "_evaluate_version", lambda r, version, h, c: report(0.78 if version == 1 else 0.90)
    )
    monkeypatch.setattr(Predictor, "from_directory", lambda directory, **kwargs: FakePredictor({}))
    return {"registry": FakeRegistry(tmp_path / "models", champion=1), "history": tmp_path / "history.jsonl"}


def gate(world: dict[str, Any], version: int) -> Any:
    return promote(
        world["registry"],
        holdout=None,  # type: ignore[arg-type]
        eval_cfg=EvalConfig(),
        gate=GATE,
        history=world["history"],
        version=version,
    )


@pytest.mark.parametrize("run", range(20))
def test_two_concurrent_promotions_leave_one_champion_and_a_consistent_history(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch, run: int
) -> None:
    both_evaluated = threading.Barrier(2)

    def evaluate(registry: Any, version: int, holdout: Any, cfg: Any) -> dict[str, Any]:
        if version != 1:  # each gate has read champion 1 before the other records anything
            both_evaluated.wait(10)
            time.sleep(0.001 * (run % 3))
        return report(0.78 if version == 1 else 0.90)

    monkeypatch.setattr(promote_module, "_evaluate_version", evaluate)
    decisions: dict[int, Any] = {}
    threads = [threading.Thread(target=lambda v=v: decisions.update({v: gate(world, v)})) for v in (2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [v for v, d in decisions.items() if d.promote]
    assert len(winners) == 1, decisions
    (winner,) = winners
    (loser,) = {2, 3} - {winner}
    assert world["registry"].aliases["champion"] == winner
    assert "champion moved from version 1" in decisions[loser].reason
    history = read_history(world["history"])
    assert [(r["action"], r["version"], r["previous_champion"], r["champion"]) for r in history] == [
        ("promote", winner, 1, winner),
        ("reject", loser, 1, winner),
    ]
    assert rollback(world["registry"], history=world["history"]) == (winner, 1)


def test_a_crash_after_the_history_line_before_the_alias_moves(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = world["registry"]

    def crash(alias: str, version: int) -> None:
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as patch:
        patch.setattr(registry, "set_alias", crash)
        with pytest.raises(KeyboardInterrupt):
            gate(world, 2)
    assert registry.aliases["champion"] == 1  # the alias is the truth
    assert [r["action"] for r in read_history(world["history"])] == ["promote"]
    with pytest.raises(RegistryError, match="no previous champion"):
        rollback(registry, history=world["history"])  # nothing was promoted: nothing to roll back
    assert gate(world, 2).promote  # the next promotion goes through
    assert registry.aliases["champion"] == 2
    assert rollback(registry, history=world["history"]) == (2, 1)


def test_a_crash_before_the_history_line_changes_nothing(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(path: Path, record: dict[str, Any]) -> None:
        raise OSError("no space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(promote_module, "append_history", crash)
        with pytest.raises(OSError, match="no space"):
            gate(world, 2)
    assert world["registry"].aliases["champion"] == 1
    assert read_history(world["history"]) == []
    assert gate(world, 2).promote and world["registry"].aliases["champion"] == 2


def test_a_torn_line_is_skipped_and_the_next_record_is_whole(
    world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    history = world["history"]
    assert gate(world, 2).promote
    with history.open("a") as handle:  # a crash in the middle of writing a record
        handle.write('{"action": "promote", "vers')
    assert gate(world, 3).promote
    records = read_history(history)
    assert [(r["action"], r["version"]) for r in records] == [("promote", 2), ("promote", 3)]
    assert f"{history} line 2 is not a complete record" in caplog.text
    assert json.loads(history.read_text().splitlines()[-1])["version"] == 3
    assert rollback(world["registry"], history=history) == (3, 2)


def test_the_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, signal, sys\n"
            "from pathlib import Path\n"
            "from tagops.workloads.promote import promotion_lock\n"
            f"with promotion_lock(Path({str(history)!r})):\n"
            "    print('locked', flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    holder.wait(30)
    started = time.monotonic()
    with promotion_lock(history, timeout_s=10):
        assert time.monotonic() - started < 5
