"""Online serving: the service, its engine, batching, the prediction log and autoscaling."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from tagops.config.base import DatabaseUrl, FrozenModel
from tagops.model_ref import DEFAULT_MODEL_URI


class AutoscalingParams(FrozenModel):
    """Ray Serve autoscaling of the prediction deployment (used instead of a fixed ``num_replicas``)."""

    #: Replicas kept however quiet traffic is; 0 lets the deployment scale to zero, and the first request
    #: after a lull then waits for a replica to start and load the model.
    min_replicas: Annotated[int, Field(ge=0)] = 1
    #: Replicas at most, however busy: a ceiling on the CPUs (``num_cpus`` each) the service takes.
    max_replicas: Annotated[int, Field(ge=1)] = 4
    #: Requests in flight per replica that the autoscaler aims for, adding replicas above it and removing
    #: them below: under ``max_ongoing_requests`` (64), so replicas come before 503s, yet enough to batch.
    target_ongoing_requests: Annotated[float, Field(gt=0.0)] = 16.0
    #: Seconds the load must stay above the target before a replica is added (a burst alone adds none).
    upscale_delay_s: Annotated[float, Field(ge=0.0)] = 5.0
    #: Seconds the load must stay below the target before a replica is removed: longer than the upscale
    #: delay, since a replica removed in a short lull must load the model again when traffic returns.
    downscale_delay_s: Annotated[float, Field(ge=0.0)] = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingParams:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas ({self.max_replicas})"
            )
        return self


class FeedbackLimit(FrozenModel):
    """How much feedback one key of a role may send: a burst-tolerant rate and a daily cap (``None``: none).

    Past either, ``POST /v1/feedback`` answers 429 with ``Retry-After``. The rate is kept by each replica
    (a key spread over ``n`` replicas may reach ``n`` times it for a moment); the daily cap counts the
    key's stored feedback since 00:00 UTC in the database, so it holds across replicas and restarts.
    """

    per_minute: Annotated[int, Field(ge=1)] | None = None
    per_day: Annotated[int, Field(ge=1)] | None = None


KeyRole = Literal["client", "labeller", "admin"]


def _default_feedback_limits() -> dict[KeyRole, FeedbackLimit]:
    return {
        "client": FeedbackLimit(per_minute=30, per_day=500),
        "labeller": FeedbackLimit(per_minute=600, per_day=20_000),
        "admin": FeedbackLimit(),
    }


class ServeConfig(FrozenModel):
    """Online serving: model, listener, batching, replicas, request bounds, keys and the prediction log.

    Loopback by default: exposing the API is a decision made in this file (``host``), never a default.
    """

    #: The model to serve; ``POST /v1/admin/reload`` switches to whatever this URI names at that moment.
    model_uri: str = DEFAULT_MODEL_URI
    #: ``ray``: Ray Serve (replicas, autoscaling, KubeRay); ``uvicorn``: one process without Ray, the lowest
    #: latency for one request on a small machine (docs/performance.md compares them).
    engine: Literal["ray", "uvicorn"] = "ray"
    #: How requests reach Ray Serve replicas (embedded cluster; on a cluster of your own, its environment
    #: decides). ``haproxy``: Ray's HAProxy ingress, a C load balancer in front of replicas that each
    #: serve HTTP themselves; ``proxy``: Ray's Python proxy actor, which relays every request to a replica
    #: and adds several times HAProxy's cost per request (benchmarks/serve.py; docs/serving.md, Ingress).
    ingress: Literal["haproxy", "proxy"] = "haproxy"
    #: The address the API listens on; loopback, so only this machine reaches it until the config says
    #: otherwise (``0.0.0.0``: every interface).
    host: str = "127.0.0.1"
    #: The API's TCP port; 0 takes any free port (the uvicorn engine only: Ray Serve needs one given).
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    #: Answers below this confidence abstain to ``other``. ``None``: the model's own threshold, chosen on
    #: validation and saved with it (``tagops.models.calibration``); ``0``: never abstain.
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    #: Items (not requests) per ``predictor.predict`` call; requests are batched whole.
    max_batch_size: Annotated[int, Field(ge=1)] = 64
    #: How long a batch waits to fill; 0 takes whatever queued while the previous batch ran.
    batch_wait_timeout_s: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    #: After a batch, hold new requests for at most this fraction of its duration until the clients it
    #: answered are back, so that clients sending one request after another stay in one batch rather than
    #: splitting into two half-size batches that take turns (:class:`tagops.serving.batching.BatchGate`);
    #: 0 turns the gate off. It steadies a transformer's throughput at concurrency 32; for a model whose
    #: batches are short next to handling their requests (``linear``), waiting for clients only idles the
    #: replica (benchmarks/serve.py). Left out of the config, ``tagops serve`` chooses it, ``num_cpus``
    #: and ``predict_in_thread`` for the served model's family (:mod:`tagops.serving.profile`).
    batch_hold_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    #: Run ``predictor.predict`` in a worker thread; ``False`` runs it on the event loop, which serves
    #: millisecond models and a transformer on Ray Serve faster: in a thread, batches form while the
    #: previous one runs and stay small (benchmarks/serve.py).
    predict_in_thread: bool = False
    #: A request whose items hold more text than this (characters a model reads, at most
    #: ``tagops.data.clean.MODEL_TEXT_CHARS`` per item) is predicted in runs of at most this much text,
    #: each followed by as long a pause for other requests, so one large request holds a replica for one
    #: run at a time, not for its whole length (``tagops.serving.batching.predict_in_turns``;
    #: benchmarks/serve_hostile.py). Requests of typical items go in one batch up to about 55 items.
    turn_chars: Annotated[int, Field(ge=1)] = 8_000
    #: Ray Serve replicas, each with its own copy of the model (the uvicorn engine is one process); set
    #: either this or ``autoscaling``.
    num_replicas: Annotated[int, Field(ge=1)] = 1
    #: Ray Serve autoscaling between a minimum and a maximum number of replicas, in place of the fixed
    #: ``num_replicas``; ``None``: a fixed count.
    autoscaling: AutoscalingParams | None = None
    #: CPUs each Ray Serve replica reserves (the uvicorn engine uses the process's). Left out of the
    #: config, ``tagops serve`` chooses it for the served model: 1 for linear or rules, up to 4 for a
    #: transformer.
    num_cpus: Annotated[float, Field(gt=0.0)] = 1.0
    #: GPUs each Ray Serve replica reserves (a fraction lets replicas share one); 0, as a served model
    #: predicts on the CPU.
    num_gpus: Annotated[float, Field(ge=0.0)] = 0.0
    #: Requests a replica (or the uvicorn process) works on at once; beyond it, 503 with ``Retry-After``.
    max_ongoing_requests: Annotated[int, Field(ge=1)] = 64
    #: Requests queued at the proxy beyond this are answered 503 (``-1``: unbounded).
    max_queued_requests: Annotated[int, Field(ge=-1)] = 1024
    #: Ray Serve's end-to-end limit, in seconds, on one HTTP request; ``None``: no limit. The uvicorn
    #: engine does not apply it.
    request_timeout_s: Annotated[float, Field(gt=0.0)] | None = 30.0
    #: Items one ``POST /v1/predict`` may carry (422 beyond); at most ``max_batch_size``, because a request
    #: is never split across batches.
    max_items: Annotated[int, Field(ge=1)] = 64
    #: Characters a title or a description may have (422 naming the field beyond); models read only the
    #: first 2,000 of each item anyway.
    max_text_length: Annotated[int, Field(ge=1)] = 10_000
    #: Bytes a request body may have: the body is read up to this and answered 413 beyond it, before any
    #: parsing, so an oversized body is never buffered whole (1 MiB).
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    #: Whether ``POST /v1/predict`` needs an API key as feedback does. Off, anyone who reaches the service
    #: may predict, which the loopback default limits to this machine; turn it on where the API is exposed.
    require_key_for_predict: bool = False
    #: Browser origins allowed to call the API from their pages (e.g. ``https://tagger.example.com``);
    #: empty: no CORS headers, so browsers refuse cross-origin calls.
    cors_origins: tuple[str, ...] = ()
    #: A log line per HTTP request (Ray Serve's replica access log, uvicorn's access log). Off by default:
    #: every request is already counted in /metrics and every prediction is in the prediction log, and
    #: Ray's access log formats and writes its lines on the replica's event loop, serial with inference.
    access_log: bool = False
    #: How the server writes its log lines: ``text`` for a person at a terminal; ``json``, one JSON object
    #: per line (time, level, logger, message, and ``request_id`` while a request is served) for a log
    #: collector, on both engines (on Ray Serve, each replica's too). ``tagops serve --log-format`` and
    #: ``TAGOPS_LOG_FORMAT`` override it.
    log_format: Literal["text", "json"] = "text"
    #: How long a verified API key is trusted without looking again (revocation delay at most this).
    key_cache_ttl_s: Annotated[float, Field(ge=0.0)] = 5.0
    #: Feedback each key may send, by its role (``client``, ``labeller``, ``admin``); a role left out
    #: keeps its default, ``{}`` lifts its limits. Client feedback waits for review anyway; the limits
    #: keep one key from flooding the review queue and the database.
    feedback_limits: dict[KeyRole, FeedbackLimit] = Field(default_factory=_default_feedback_limits)
    #: SQLAlchemy URL of the prediction log and key store; ``None``: SQLite under TAGOPS_HOME/serving.
    database_url: DatabaseUrl | None = Field(default=None, repr=False)
    #: Prediction rows waiting for the log's writer, at most: past it, a request's rows are dropped and
    #: counted (the prediction is still answered), so a stalled database never grows memory without bound.
    log_queue_rows: Annotated[int, Field(ge=1)] = 100_000
    #: Rows the log's writer inserts in one transaction, at most.
    log_batch_rows: Annotated[int, Field(ge=1)] = 500
    #: The log writer waits this long after a first row for more, then writes them in one transaction.
    log_flush_interval_s: Annotated[float, Field(gt=0.0)] = 0.2
    #: Append each request's log rows to a local file under TAGOPS_HOME before queueing them, so rows
    #: of a killed replica or of a database outage are written later instead of lost.
    log_journal: bool = True
    #: Cap on the journal folder (every replica and table journaling for this database on the same host).
    #: During a long database outage rows beyond it are not journaled: they stay queued in memory and,
    #: if the database is still down after the writer's tries, are counted ``failed``, instead of the
    #: journal filling the disk that TAGOPS_HOME shares. ``None``: no cap.
    log_journal_max_mb: Annotated[float, Field(gt=0.0)] | None = 1024.0
    #: Retention of the prediction log, applied by the server once an hour and by `tagops log-prune`:
    #: predictions older than this many days, and beyond the newest ``log_retention_rows``, are deleted
    #: with their shadow answers, except those that received feedback (training data). ``None``: no limit.
    log_retention_days: Annotated[float, Field(gt=0.0)] | None = 90.0
    #: Retention by count: only the newest this many predictions are kept (those with feedback aside),
    #: in the same pass as ``log_retention_days``. ``None``: no limit on rows.
    log_retention_rows: Annotated[int, Field(ge=0)] | None = 10_000_000
    #: How often each replica reports its model and checks for a reload made on another replica.
    sync_interval_s: Annotated[float, Field(gt=0.0)] = 1.0
    #: How long ``POST /v1/admin/reload`` waits for every live replica to serve the new model; it then
    #: answers with how many do, and the others still follow at their next sync.
    reload_timeout_s: Annotated[float, Field(gt=0.0)] = 60.0
    #: How often Ray Serve checks each replica; a crashed replica is noticed (and replaced) at the next
    #: check, so this bounds the time before a replacement starts.
    health_check_period_s: Annotated[float, Field(gt=0.0)] = 1.0
    #: A model to run in shadow (typically ``models:/tagops@challenger``): it scores copies of live
    #: requests after they are answered, its answers go to the prediction log's ``shadow_predictions``
    #: and are never returned. ``None``: no shadow. A reload re-resolves it too.
    shadow_model_uri: str | None = None
    #: Items waiting for the shadow model beyond this are skipped (counted), never queued without bound.
    shadow_queue_items: Annotated[int, Field(ge=1)] = 10_000

    @property
    def log_journal_max_bytes(self) -> int | None:
        """``log_journal_max_mb`` in bytes (``None``: no cap)."""
        return None if self.log_journal_max_mb is None else int(self.log_journal_max_mb * 1024 * 1024)

    @field_validator("feedback_limits", mode="before")
    @classmethod
    def _limits_over_defaults(cls, value: object) -> object:
        if isinstance(value, dict):
            return {**_default_feedback_limits(), **value}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServeConfig:
        if self.max_items > self.max_batch_size:
            raise ValueError(
                f"max_items ({self.max_items}) must not exceed max_batch_size ({self.max_batch_size}): "
                "a request is never split across batches"
            )
        if self.autoscaling is not None and self.num_replicas != 1:
            raise ValueError("set either num_replicas or autoscaling, not both")
        return self
