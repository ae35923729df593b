"""The rollout report and policy: error rates with Wilson intervals, latency, unpaired F1 intervals, and
promote / abort / continue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tagops.config import RolloutPolicy
from tagops.serving.state import RolloutRecord
from tagops.workloads.rollout import rollout_decision, rollout_report, trusted_labels, wilson_interval

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, tzinfo=UTC)
TAGS = ("computer-vision", "mlops", "natural-language-processing", "other")


def record(**counts: int) -> RolloutRecord:
    values = {"champion_answered": 0, "champion_failed": 0, "canary_answered": 0, "canary_failed": 0}
    values.update(counts)
    return RolloutRecord(
        deployment_id="d",
        model_uri="models:/tagops/2",
        model_version=2,
        champion_uri="models:/tagops/1",
        champion_version=1,
        weight=10.0,
        state="active",
        started_at=T0,
        ended_at=None,
        reason=None,
        **values,
    )


def answers(
    uri: str, n: int, *, wrong_every: int = 0, latency: float = 10.0
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    rows, labels = [], {}
    for i in range(n):
        truth = TAGS[i % 4]
        tag = TAGS[(i + 1) % 4] if wrong_every and i % wrong_every == 0 else truth
        rows.append(
            {
                "id": f"{uri}-{i}",
                "model_uri": uri,
                "tag": tag,
                "latency_ms": latency + i % 5,
                "request_id": None,
            }
        )
        labels[f"{uri}-{i}"] = truth
    return rows, labels


def report(canary_wrong: int, *, canary_latency: float = 10.0, **counts: int) -> dict[str, Any]:
    champion_rows, champion_labels = answers("models:/tagops/1", 400, wrong_every=20)
    canary_rows, canary_labels = answers(
        "models:/tagops/2", 400, wrong_every=canary_wrong, latency=canary_latency
    )
    defaults = {"champion_answered": 3600, "canary_answered": 400}
    defaults.update(counts)
    return rollout_report(
        record(**defaults),
        champion_rows + canary_rows,
        {**champion_labels, **canary_labels},
        bootstrap_samples=500,
        seed=1,
    )


def test_wilson_interval_is_sane() -> None:
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 1000)  # type: ignore[misc]
    assert low == 0.0 and 0.0 < high < 0.005
    low, high = wilson_interval(50, 1000)  # type: ignore[misc]
    assert 0.037 < low < 0.05 < high < 0.066


def test_an_equal_canary_is_promoted() -> None:
    result = report(canary_wrong=20)
    assert result["canary"]["labelled"] == 400 and result["canary_share"] == pytest.approx(0.1)
    assert abs(result["f1_difference"]) < 1e-9
    action, reason = rollout_decision(result, RolloutPolicy())
    assert action == "promote", reason


def test_a_worse_canary_is_aborted_and_an_unclear_one_waits() -> None:
    worse = report(canary_wrong=3)  # a third wrong
    assert rollout_decision(worse, RolloutPolicy())[0] == "abort"
    few = rollout_decision(report(canary_wrong=20), RolloutPolicy(min_labelled=1000))
    assert few[0] == "continue" and "trusted label" in few[1]
    slightly = report(canary_wrong=12)
    action, reason = rollout_decision(slightly, RolloutPolicy(f1_margin=0.0))
    assert action == "continue", reason


def test_errors_and_latency_breaches_abort() -> None:
    failing = report(canary_wrong=20, canary_answered=380, canary_failed=20)
    action, reason = rollout_decision(failing, RolloutPolicy())
    assert action == "abort" and "error rate" in reason
    slow = report(canary_wrong=20, canary_latency=40.0)
    action, reason = rollout_decision(slow, RolloutPolicy())
    assert action == "abort" and "latency" in reason
    # 3x the champion's p95 but only some milliseconds more: within the slack, not a breach
    assert rollout_decision(report(canary_wrong=20, canary_latency=30.0), RolloutPolicy())[0] == "promote"
    # too few canary requests to judge errors or latency: keep measuring
    early = report(canary_wrong=20, canary_latency=40.0, canary_answered=50)
    assert rollout_decision(early, RolloutPolicy())[0] == "continue"


def test_only_trusted_labels_count() -> None:
    rows = [
        {
            "feedback_id": "1",
            "feedback_at": T0,
            "feedback_tag": "mlops",
            "prediction_id": "p",
            "key_role": "labeller",
            "key_revoked_at": None,
            "review": None,
        },
        {
            "feedback_id": "2",
            "feedback_at": T0,
            "feedback_tag": "other",
            "prediction_id": "q",
            "key_role": "client",
            "key_revoked_at": None,
            "review": None,
        },
        {
            "feedback_id": "3",
            "feedback_at": T0,
            "feedback_tag": "other",
            "prediction_id": "r",
            "key_role": "client",
            "key_revoked_at": None,
            "review": "accepted",
        },
    ]
    assert trusted_labels(rows) == {"p": "mlops", "r": "other"}
