"""A workload's list of stages: run in order, results by name, settings only where a stage asks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tagops.settings import Settings
from tagops.workloads.stages import Stage, check_plan, run_stages

pytestmark = pytest.mark.unit


def split(text: str) -> tuple[str, str]:
    head, _, tail = text.partition(" ")
    return head, tail


def join(parts: list[str], sep: str) -> str:
    return sep.join(parts)


def locate(settings: Settings, name: str) -> Path:
    return settings.home / name


def test_stages_run_in_order_reading_earlier_results_by_name(tmp_path: Path) -> None:
    plan = [
        Stage("split", split, params={"text": "left right"}, outputs=("left", "right")),
        Stage("join", join, inputs={"parts": ("right", "left")}, params={"sep": "+"}, outputs=("joined",)),
        Stage("locate", locate, inputs={"name": "joined"}, outputs=("path",)),
    ]
    check_plan(plan)
    results = run_stages(plan, Settings(home=tmp_path))
    assert results["left"] == "left" and results["right"] == "right"
    assert results["joined"] == "right+left"  # a tuple of names arrives as a list, in its order
    assert results["path"] == tmp_path.resolve() / "right+left"  # only the stage that asks gets settings


def test_known_results_seed_a_plan(tmp_path: Path) -> None:
    plan = [Stage("join", join, inputs={"parts": ("a", "b")}, params={"sep": "-"}, outputs=("joined",))]
    check_plan(plan, given=("a", "b"))
    assert run_stages(plan, Settings(home=tmp_path), results={"a": "x", "b": "y"})["joined"] == "x-y"


def test_a_plan_that_reads_what_nothing_produced_is_refused(tmp_path: Path) -> None:
    plan = [Stage("join", join, inputs={"parts": ("missing",)}, params={"sep": ""}, outputs=("joined",))]
    with pytest.raises(ValueError, match="'join' reads \\['missing'\\]"):
        check_plan(plan)
    with pytest.raises(KeyError, match="missing"):
        run_stages(plan, Settings(home=tmp_path))


def test_repeated_stage_names_are_refused() -> None:
    stage = Stage("split", split, params={"text": "a b"}, outputs=("left", "right"))
    with pytest.raises(ValueError, match="repeats"):
        check_plan([stage, stage])


def test_a_stage_returning_the_wrong_number_of_results_fails_by_name(tmp_path: Path) -> None:
    def three() -> tuple[Any, ...]:
        return 1, 2, 3

    plan = [Stage("three", three, outputs=("a", "b"))]
    with pytest.raises(ValueError, match="'three' returned 3 values"):
        run_stages(plan, Settings(home=tmp_path))
