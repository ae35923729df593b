"""Prometheus metrics of one app, in its own registry (never the process-global one).

Each replica exposes its own series at ``GET /metrics``, labelled with the replica id, so several replicas
behind one proxy are told apart; a Prometheus scrape of every replica (or Ray's metrics export) sums them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

#: Request latency buckets (seconds): 1 ms to 10 s.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: Batch gate holds (seconds): 0.1 ms to 1 s.
HOLD_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Items per ``predictor.predict`` call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    """Counters, histograms and gauges of the prediction service."""

    def __init__(self, replica: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"replica": replica}
        self.requests = Counter(
            "tagops_http_requests",
            "HTTP requests by route, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tagops_http_request_duration_seconds",
            "Time from request to response, by route.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "tagops_http_errors",
            "Error answers by route and kind (client: 4xx, server: 5xx, unhandled: an exception).",
            ["route", "kind"],
            registry=self.registry,
        )
        self.predictions = Counter(
            "tagops_predictions",
            "Predicted items by tag and whether the answer abstained to `other`.",
            ["tag", "abstained", "model_version"],
            registry=self.registry,
        )
        self.batch_items = Histogram(
            "tagops_predict_batch_items",
            "Items per predictor.predict call (dynamic batching).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.inference_seconds = Histogram(
            "tagops_predict_batch_duration_seconds",
            "Time inside predictor.predict per batch.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_gate_releases = Counter(
            "tagops_batch_gate_releases",
            "Releases of held requests to the batcher by reason (target: the clients of the last batch "
            "came back; full: a full batch waits; deadline: the hold ran out).",
            ["reason"],
            registry=self.registry,
        )
        self.unbatched = Counter(
            "tagops_predict_unbatched",
            "Requests the batch gate released by themselves and predicted without the batcher.",
            registry=self.registry,
        )
        self.in_turns = Counter(
            "tagops_predict_in_turns",
            "Requests with more text than turn_chars, predicted in runs that take turns with other requests.",
            registry=self.registry,
        )
        self.batch_hold_seconds = Histogram(
            "tagops_batch_hold_seconds",
            "Time the batch gate held a release's first request after the previous batch ended.",
            buckets=HOLD_BUCKETS,
            registry=self.registry,
        )
        self.model_info = Gauge(
            "tagops_model_info",
            "The served model (value 1) with its name, version, family and alias as labels.",
            ["name", "version", "family", "alias", "replica"],
            registry=self.registry,
        )
        self.model_version = Gauge(
            "tagops_model_version",
            "Registry version of the served model (-1 for a model loaded from a folder).",
            ["replica"],
            registry=self.registry,
        ).labels(**labels)
        self.reloads = Counter(
            "tagops_model_reloads",
            "Model reloads by trigger (admin, sync) and outcome (ok, unchanged, failed).",
            ["trigger", "outcome"],
            registry=self.registry,
        )
        self.log_rows = Counter(
            "tagops_prediction_log_rows",
            "Prediction log rows by outcome (written; dropped: queue full or stopped; failed: DB error; "
            "recovered: written later from the journal; pruned: deleted by the log's retention).",
            ["outcome"],
            registry=self.registry,
        )
        self.log_queue_rows = Gauge(
            "tagops_prediction_log_queue_rows",
            "Rows waiting to be written to the prediction log.",
            registry=self.registry,
        )
        self.log_size_rows = Gauge(
            "tagops_prediction_log_size_rows",
            "Rows the prediction log holds by table (predictions, shadow_predictions), counted at start "
            "and at each retention pass (hourly).",
            ["table"],
            registry=self.registry,
        )
        self.log_size_bytes = Gauge(
            "tagops_prediction_log_size_bytes",
            "Size of the prediction log as its database reports it (SQLite: the database file; "
            "PostgreSQL: the two tables with indexes), measured with the row counts.",
            registry=self.registry,
        )
        self.log_journal_files = Gauge(
            "tagops_prediction_log_journal_files",
            "Files in this machine's prediction-log journal (segment: rows not yet known written, of any "
            "process; bad: set aside as unreadable). Segments that keep growing mean the database is down.",
            ["kind"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "tagops_auth_failures",
            "Requests refused for a missing, unknown, revoked or under-privileged API key.",
            ["reason"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "tagops_feedback",
            "Feedback stored, by the sending key's role and whether it waits for review.",
            ["role", "status"],
            registry=self.registry,
        )
        self.feedback_refused = Counter(
            "tagops_feedback_refused",
            "Feedback answered 429: the key's rate or daily cap was reached.",
            ["role"],
            registry=self.registry,
        )
        self.canary_weight = Gauge(
            "tagops_canary_weight_percent",
            "Share of requests a canary rollout sends to the challenger (0: no rollout).",
            registry=self.registry,
        )
        self.canary_version = Gauge(
            "tagops_canary_model_version",
            "Registry version of the canary (-1: none, or not a registry model).",
            registry=self.registry,
        )
        self.routed = Counter(
            "tagops_routed_requests",
            "Prediction requests by the side of a rollout that answered them and the outcome.",
            ["side", "outcome"],
            registry=self.registry,
        )
        self.log_unjournaled_rows = Counter(
            "tagops_prediction_log_unjournaled_rows",
            "Prediction log rows queued without a journal line (journal at its cap, or not writable): "
            "a kill or an outage outlasting the writer's tries loses them.",
            registry=self.registry,
        )
        self.shadow_items = Counter(
            "tagops_shadow_items",
            "Items copied to the shadow model by outcome (scored; skipped: queue full or no shadow "
            "loaded; failed: the shadow model raised).",
            ["outcome"],
            registry=self.registry,
        )
        self.replica = replica
        for outcome in ("written", "dropped", "failed", "recovered", "pruned"):
            self.log_rows.labels(outcome=outcome)
        for reason in ("target", "full", "deadline"):
            self.batch_gate_releases.labels(reason=reason)

    def gate_released(self, reason: str, held_s: float, requests: int) -> None:
        """Record one release of the batch gate (``requests`` is not recorded: batch sizes are)."""
        self.batch_gate_releases.labels(reason=reason).inc()
        self.batch_hold_seconds.observe(held_s)

    def set_model(self, *, name: str | None, version: int | None, family: str, alias: str | None) -> None:
        """Record the model now served (one ``tagops_model_info`` series at a time)."""
        self.model_info.clear()
        self.model_info.labels(
            name=name or "",
            version="" if version is None else str(version),
            family=family,
            alias=alias or "",
            replica=self.replica,
        ).set(1)
        self.model_version.set(-1 if version is None else version)

    def set_canary(self, version: int | None, weight: float) -> None:
        """Record the canary now in rollout (``weight`` 0: none)."""
        self.canary_weight.set(weight)
        self.canary_version.set(-1 if version is None else version)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
