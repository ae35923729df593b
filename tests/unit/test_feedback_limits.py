"""Per-key feedback limits: the bucket refills evenly, the daily cap resets at 00:00 UTC, nothing is
taken from a refused request."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tagops.config.serving import FeedbackLimit
from tagops.serving.limits import FeedbackLimiter

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_bucket_refills_evenly_and_keys_do_not_share_it() -> None:
    clock = Clock()
    limiter = FeedbackLimiter({"client": FeedbackLimit(per_minute=6)}, lambda *_: 0, clock=clock)
    assert [limiter.check("a", "client") for _ in range(6)] == [None] * 6
    refusal = limiter.check("a", "client")
    assert refusal is not None and refusal.retry_after_s == 10  # one token per 10 s
    assert limiter.check("b", "client") is None
    clock.t = 9.0
    assert limiter.check("a", "client") is not None
    clock.t = 10.0
    assert limiter.check("a", "client") is None
    assert limiter.check("a", "admin") is None  # no limit for a role without one


def test_the_daily_cap_counts_stored_feedback_and_gives_the_token_back() -> None:
    stored = {"a": 0}
    now = datetime(2026, 12, 3, 23, 59, 30, tzinfo=UTC)
    seen: list[datetime] = []

    def count(key_id: str, since: datetime) -> int:
        seen.append(since)
        return stored[key_id]

    clock = Clock()
    limiter = FeedbackLimiter(
        {"client": FeedbackLimit(per_minute=2, per_day=3)}, count, clock=clock, now=lambda: now
    )
    stored["a"] = 3
    refusal = limiter.check("a", "client")
    assert refusal is not None and refusal.retry_after_s == 30 and "3 per day" in refusal.reason
    assert seen[-1] == datetime(2026, 12, 3, tzinfo=UTC)
    stored["a"] = 0  # a new day: the refused requests cost no token
    assert limiter.check("a", "client") is None and limiter.check("a", "client") is None
    assert limiter.check("a", "client") is not None
