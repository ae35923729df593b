"""Per-key feedback limits: a token bucket per key and a daily cap counted in the database.

The bucket holds a burst of ``per_minute`` and refills evenly; it lives in the replica (no round trip
per request). The daily cap is the key's stored feedback since 00:00 UTC, read from the prediction log's
database, so every replica and every restart sees the same count (requests in flight at the same moment
may pass it by a few). A refused request costs the key nothing: a token taken for a request the daily
cap refuses is given back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagops.config.serving import FeedbackLimit

#: Buckets kept at most; past it they are dropped and refill from full (bounded memory whatever keys
#: are used).
_MAX_BUCKETS = 10_000


@dataclass(frozen=True)
class Refusal:
    """Why a key may not send feedback now, and when to try again."""

    reason: str
    retry_after_s: int


class FeedbackLimiter:
    """Checks a key against its role's :class:`~tagops.config.serving.FeedbackLimit`."""

    def __init__(
        self,
        limits: Mapping[Any, FeedbackLimit],
        count_since: Callable[[str, datetime], int],
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.limits = dict(limits)
        self.count_since = count_since
        self.clock = clock
        self.now = now
        self._buckets: dict[str, tuple[float, float]] = {}  # key id → (tokens, at)
        self._lock = threading.Lock()

    def check(self, key_id: str, role: str) -> Refusal | None:
        """``None`` if the key may send one more label now (and it is counted), else why not.

        Blocking (it may query the database): call it from a worker thread.
        """
        limit = self.limits.get(role)
        if limit is None or (limit.per_minute is None and limit.per_day is None):
            return None
        if limit.per_minute is not None:
            wait = self._take(key_id, limit.per_minute)
            if wait > 0:
                return Refusal(
                    f"feedback rate limit of this key's role ({role}): {limit.per_minute} per minute",
                    max(1, math.ceil(wait)),
                )
        if limit.per_day is not None:
            now = self.now()
            midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
            if self.count_since(key_id, midnight) >= limit.per_day:
                if limit.per_minute is not None:
                    self._give_back(key_id, limit.per_minute)
                retry = (midnight + timedelta(days=1) - now).total_seconds()
                return Refusal(
                    f"daily feedback cap of this key's role ({role}): {limit.per_day} per day (UTC)",
                    max(1, math.ceil(retry)),
                )
        return None

    def _refilled(self, key_id: str, per_minute: int) -> float:
        tokens, at = self._buckets.get(key_id, (float(per_minute), self.clock()))
        return min(float(per_minute), tokens + (self.clock() - at) * per_minute / 60.0)

    def _take(self, key_id: str, per_minute: int) -> float:
        """Take a token from the key's bucket: 0, or the seconds until one is there (nothing taken)."""
        with self._lock:
            tokens = self._refilled(key_id, per_minute)
            if tokens < 1.0:
                return (1.0 - tokens) * 60.0 / per_minute
            if len(self._buckets) >= _MAX_BUCKETS and key_id not in self._buckets:
                self._buckets.clear()
            self._buckets[key_id] = (tokens - 1.0, self.clock())
            return 0.0

    def _give_back(self, key_id: str, per_minute: int) -> None:
        with self._lock:
            tokens = self._refilled(key_id, per_minute)
            self._buckets[key_id] = (min(float(per_minute), tokens + 1.0), self.clock())
