"""When the retrain runs (the policy), what it records, and the two gates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tagops.config import RetrainConfig, RetrainPolicy
from tagops.workloads.retrain import gate_stage
from tagops.workloads.retrain_policy import decide_retrain, last_retrain_time, latest_monitor_summary

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def summary(**overrides: Any) -> dict[str, Any]:
    values = {
        "created_at": (NOW - timedelta(minutes=5)).isoformat(),
        "since": "2026-11-26T10:00:00+00:00",
        "until": "2026-11-26T11:00:00+00:00",
        "alarm": True,
        "drift_alarm": True,
        "model_version": 3,
    }
    values.update(overrides)
    return values


def decide(policy: RetrainPolicy | None = None, **kwargs: Any) -> Any:
    values: dict[str, Any] = {
        "if_needed": True,
        "now": NOW,
        "summary": summary(),
        "champion_version": 3,
        "last_retrain_at": None,
        "feedback_rows": 100,
    }
    values.update(kwargs)
    return decide_retrain(policy or RetrainPolicy(), **values)


def test_by_hand_always_runs_and_says_manual() -> None:
    decision = decide(if_needed=False, summary=None, feedback_rows=0)
    assert decision.run and decision.reason == "manual"


def test_an_alarm_triggers_with_its_window_in_the_reason() -> None:
    decision = decide()
    assert decision.run
    assert decision.reason == "drift alarm at 2026-11-26T10:00:00+00:00 to 2026-11-26T11:00:00+00:00"
    assert decide(summary=summary(drift_alarm=False)).reason.startswith("performance alarm at")


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"summary": None}, "no monitor summary"),
        ({"summary": summary(alarm=False, drift_alarm=False)}, "raised no alarm"),
        ({"summary": summary(model_version=2)}, "the champion is 3"),
        ({"summary": summary(created_at=(NOW - timedelta(hours=30)).isoformat())}, "older than 24 h"),
        ({"last_retrain_at": NOW - timedelta(minutes=10)}, "was handled by the retrain"),
        ({"feedback_rows": 5}, "only 5 trusted feedback rows"),
    ],
)
def test_an_alarm_does_not_trigger_when(kwargs: dict[str, Any], why: str) -> None:
    decision = decide(**kwargs)
    assert not decision.run
    assert why in decision.reason


def test_schedule_runs_when_the_interval_has_passed() -> None:
    policy = RetrainPolicy(trigger="schedule", interval_hours=24)
    assert decide(policy, summary=None, last_retrain_at=None).reason == "schedule"
    assert decide(policy, summary=None, last_retrain_at=NOW - timedelta(hours=25)).run
    assert not decide(policy, summary=None, last_retrain_at=NOW - timedelta(hours=2)).run


def test_a_manual_policy_never_runs_on_its_own() -> None:
    decision = decide(RetrainPolicy(trigger="manual"))
    assert not decision.run and "manual" in decision.reason


def test_the_newest_monitor_summary_is_consulted(tmp_path: Path) -> None:
    for name, created in (
        ("monitor-a", "2026-11-26T10:00:00+00:00"),
        ("monitor-b", "2026-11-26T11:00:00+00:00"),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps({"created_at": created, "name": name}))
    (tmp_path / "monitor-c").mkdir()
    (tmp_path / "monitor-c" / "summary.json").write_text("{not json")
    found = latest_monitor_summary(tmp_path)
    assert found is not None and found["name"] == "monitor-b"
    assert latest_monitor_summary(tmp_path / "nothing") is None


def test_the_last_retrain_is_the_newest_record_with_a_trigger() -> None:
    history = [
        {"time": "2026-11-20T10:00:00+0000", "action": "promote", "trigger": "initial"},
        {"time": "2026-11-21T10:00:00+0000", "action": "reject", "trigger": "schedule"},
        {"time": "2026-11-22T10:00:00+0000", "action": "promote"},  # `tagops promote` by hand
        {"time": "2026-11-23T10:00:00+0000", "action": "rollback"},
    ]
    assert last_retrain_time(history) == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert last_retrain_time(history[:1]) is None


def report(f1: float, per_class: dict[str, float] | None = None) -> dict[str, Any]:
    classes = per_class or {"mlops": f1, "other": f1}
    return {"overall": {"f1": f1}, "per_class": {k: {"f1": v} for k, v in classes.items()}}


def test_both_gates_must_pass() -> None:
    cfg = RetrainConfig()
    passing = gate_stage(
        {
            "champion_holdout": report(0.90),
            "challenger_holdout": report(0.895),  # within the 0.01 holdout margin
            "champion_recent": report(0.40),
            "challenger_recent": report(0.80),
        },
        cfg,
    )
    assert passing["promote"] and "recent window" in passing["reason"]
    forgets = gate_stage(
        {
            "champion_holdout": report(0.90),
            "challenger_holdout": report(0.85),
            "champion_recent": report(0.40),
            "challenger_recent": report(0.80),
        },
        cfg,
    )
    assert not forgets["promote"] and forgets["holdout"]["promote"] is False
    no_gain = gate_stage(
        {
            "champion_holdout": report(0.90),
            "challenger_holdout": report(0.91),
            "champion_recent": report(0.80),
            "challenger_recent": report(0.70),
        },
        cfg,
    )
    assert not no_gain["promote"] and no_gain["recent"]["promote"] is False
    no_recent = gate_stage(
        {
            "champion_holdout": report(0.90),
            "challenger_holdout": report(0.91),
            "champion_recent": None,
            "challenger_recent": None,
        },
        cfg,
    )
    assert no_recent["promote"] and "no labelled rows held out" in no_recent["reason"]
