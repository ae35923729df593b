"""An HTTP client of the running service: predictions, feedback and reloads, as users and operators send."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tagops.errors import TagopsError

if TYPE_CHECKING:
    import httpx
    import pandas as pd


logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ service
@dataclass
class Sent:
    """What one phase sent and got back."""

    name: str
    since: datetime
    until: datetime
    titles: list[str]
    descriptions: list[str]
    truth: list[str]
    prediction_ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    top_tags: list[str] = field(default_factory=list)
    versions: list[int | None] = field(default_factory=list)
    failed_requests: int = 0


class ServiceClient:
    """Requests to the running service: batches of predictions and single feedback posts, concurrently."""

    def __init__(
        self,
        url: str,
        admin_key: str,
        *,
        concurrency: int,
        request_items: int,
        labeller_key: str | None = None,
    ) -> None:
        import httpx

        self.url = url
        self.key = admin_key
        self.labeller_key = labeller_key or admin_key
        self.concurrency = concurrency
        self.request_items = request_items
        self.http: httpx.Client = httpx.Client(
            base_url=url,
            timeout=60.0,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self.items_sent = 0
        self.failed_requests = 0
        self.feedback_accepted = 0
        self.feedback_failed = 0

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def predict(self, name: str, frame: pd.DataFrame) -> Sent:
        """Send ``frame``'s items in requests of ``request_items``; answers kept in order."""
        titles = [str(t) for t in frame["title"]]
        descriptions = [str(d) for d in frame["description"]]
        sent = Sent(
            name, datetime.now(UTC), datetime.now(UTC), titles, descriptions, [str(t) for t in frame["tag"]]
        )
        chunks = [
            range(i, min(i + self.request_items, len(titles)))
            for i in range(0, len(titles), self.request_items)
        ]

        def post(chunk: range) -> list[dict[str, Any]] | None:
            body = {"items": [{"title": titles[i], "description": descriptions[i]} for i in chunk]}
            response = self.http.post("/v1/predict", json=body)
            if response.status_code != 200:
                logger.error(
                    "simulate: /v1/predict answered %d: %s", response.status_code, response.text[:200]
                )
                return None
            answer: dict[str, Any] = response.json()
            version = answer["model"]["version"]
            return [{**p, "version": version} for p in answer["predictions"]]

        with ThreadPoolExecutor(self.concurrency) as pool:
            answers = list(pool.map(post, chunks))
        for chunk, answer in zip(chunks, answers, strict=True):
            self.items_sent += len(chunk)
            if answer is None:
                sent.failed_requests += 1
                self.failed_requests += 1
                answer = [{"prediction_id": "", "tag": "", "probabilities": {}, "version": None}] * len(chunk)
            for prediction in answer:
                sent.prediction_ids.append(str(prediction["prediction_id"]))
                sent.tags.append(str(prediction["tag"]))
                probabilities = prediction["probabilities"] or {"": 0.0}
                sent.top_tags.append(max(probabilities, key=lambda k: float(probabilities[k])))
                sent.versions.append(prediction["version"])
        sent.until = datetime.now(UTC)
        return sent

    def feedback(self, pairs: list[tuple[str, str]], *, key: str | None = None) -> int:
        """POST each (prediction id, tag) with ``key`` (default: the labeller's); returns how many are stored.

        A labeller's labels train; a client key's wait for review.
        """
        headers = {"Authorization": f"Bearer {key or self.labeller_key}"}

        def post(pair: tuple[str, str]) -> bool:
            response = self.http.post(
                "/v1/feedback", json={"prediction_id": pair[0], "tag": pair[1]}, headers=headers
            )
            if response.status_code != 201:
                logger.error(
                    "simulate: /v1/feedback answered %d: %s", response.status_code, response.text[:200]
                )
            return response.status_code == 201

        with ThreadPoolExecutor(self.concurrency) as pool:
            stored = sum(pool.map(post, [p for p in pairs if p[0]]))
        self.feedback_accepted += stored
        self.feedback_failed += len(pairs) - stored
        return stored

    def rollout(self, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST`` (start), ``GET`` or ``DELETE`` (abort) ``/v1/admin/rollout`` with the admin key."""
        response = self.http.request(
            method, "/v1/admin/rollout", json=body, headers={"Authorization": f"Bearer {self.key}"}
        )
        if response.status_code != 200:
            raise TagopsError(
                f"simulate: rollout {method} answered {response.status_code}: {response.text[:300]}"
            )
        answer: dict[str, Any] = response.json()
        return answer

    def reload(self) -> dict[str, Any]:
        """POST /v1/admin/reload with the admin key."""
        response = self.http.post("/v1/admin/reload", headers={"Authorization": f"Bearer {self.key}"})
        if response.status_code != 200:
            raise TagopsError(f"simulate: reload answered {response.status_code}: {response.text[:300]}")
        body: dict[str, Any] = response.json()
        return body
