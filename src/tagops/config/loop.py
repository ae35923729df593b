"""The loop after serving: reference statistics, monitoring, retraining and the simulation."""

from __future__ import annotations

import itertools
import re
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from tagops.config.base import DatabaseUrl, FrozenModel, Seed
from tagops.config.training import GateConfig, TrainConfig
from tagops.model_ref import DEFAULT_MODEL_URI


class ReferenceConfig(FrozenModel):
    """What is recorded about a model's inputs and outputs when it is registered (``reference_stats.json``).

    The reference is the model's answers on the holdout (data it never trained on, so its confidence
    looks like production's) and the vocabulary of its training texts; ``tagops monitor`` compares
    live traffic with it. The MiniLM embeddings of ``embedding_sample`` rows are the costly part of
    registering and monitoring on a CPU (benchmarks/drift.py times whole windows).
    """

    #: Record reference statistics when a model is registered; off, ``tagops monitor`` cannot check that
    #: model's traffic.
    enabled: bool = True
    #: ``minilm``: the bundled all-MiniLM-L6-v2, mean-pooled; ``hashing``: a stateless hashed bag of words
    #: randomly projected (milliseconds, for tests and machines without torch); ``none``: no embeddings.
    embedder: Literal["minilm", "hashing", "none"] = "minilm"
    #: Holdout rows embedded (a random subset beyond this) as the reference of the embedding (MMD) test;
    #: 0: no embeddings, so no embedding test.
    embedding_sample: Annotated[int, Field(ge=0, le=4096)] = 256
    #: Rows of token counts and confidences kept for the two-sample tests.
    value_sample: Annotated[int, Field(ge=10)] = 5000
    #: Upper edges of the token-count buckets (the last bucket is open-ended).
    length_edges: tuple[Annotated[int, Field(ge=1)], ...] = (8, 16, 32, 64, 128)
    #: Upper edges of the per-text out-of-vocabulary rate buckets (0 means "no unknown token").
    oov_edges: tuple[Annotated[float, Field(ge=0.0, le=1.0)], ...] = (0.0, 0.05, 0.15, 0.3)
    #: Seeds which rows the samples keep, so a model's reference can be recorded again identically.
    seed: Seed = 1234

    @model_validator(mode="after")
    def _increasing(self) -> ReferenceConfig:
        for name in ("length_edges", "oov_edges"):
            edges = getattr(self, name)
            if not edges or any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError(f"{name} must be a non-empty, strictly increasing list, got {list(edges)}")
        return self


DriftTestName = Literal["token_count", "length_bucket", "oov", "embedding", "predicted_tag", "confidence"]

DRIFT_TESTS: tuple[DriftTestName, ...] = (
    "token_count",
    "length_bucket",
    "oov",
    "embedding",
    "predicted_tag",
    "confidence",
)


class MonitorConfig(FrozenModel):
    """``tagops monitor``: which window to read, the drift tests' thresholds and where alerts go.

    The alarm is family-wise: Holm's correction over the tests in ``alarm_tests``, so that with six tests
    at ``alpha=0.01`` an in-distribution window raises a false alarm at most 1 % of the time.
    """

    #: The model whose traffic is checked and whose reference statistics it is compared with: a
    #: ``models:/`` URI, or a ``reference_stats.json`` file or a folder holding one.
    model_uri: str = DEFAULT_MODEL_URI
    #: The window when ``--since`` is not given: this many hours before ``--until`` (default now).
    window_hours: Annotated[float, Field(gt=0.0)] = 24.0
    #: Only rows the model ``model_uri`` resolves to answered (by registry version), when it has one.
    only_model_version: bool = True
    #: Family-wise false-alarm rate: a drift alarm needs some test's adjusted p-value below it. 0.01, as
    #: the monitor runs window after window: at 0.05, one quiet window in twenty would raise an alarm.
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.01
    #: Multiple-test correction of the p-values: ``holm`` keeps the same false-alarm guarantee as
    #: ``bonferroni`` and detects at least as much.
    correction: Literal["holm", "bonferroni"] = "holm"
    #: The drift tests that may raise the alarm (and enter the correction); the others are still reported.
    alarm_tests: tuple[DriftTestName, ...] = DRIFT_TESTS
    #: Fewer rows than this: no test is run and no alarm raised (the report says so).
    min_window_rows: Annotated[int, Field(ge=2)] = 100
    #: Rows with feedback needed before the window's F1 is compared with the holdout's.
    min_feedback_rows: Annotated[int, Field(ge=2)] = 50
    #: Performance alarm: the upper end of the window's 95 % F1 interval is this far below holdout F1.
    max_f1_drop: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    #: Bootstrap resamples for the interval of the window's feedback F1 (and the shadow report's).
    bootstrap_samples: Annotated[int, Field(ge=100)] = 1000
    #: Permutations of the MMD test; the smallest p-value it can give is 1 / (permutations + 1).
    permutations: Annotated[int, Field(ge=100)] = 2000
    #: Window rows embedded for the MMD test (a random subset beyond this).
    max_embedding_rows: Annotated[int, Field(ge=10)] = 512
    #: Where an alarm's summary is POSTed as JSON; ``None``: the alarm is logged only. A secret: it stays
    #: out of printed configs and ZenML's step parameters, and logs show its scheme and host only.
    webhook_url: str | None = Field(default=None, repr=False)
    #: Seconds to wait for the webhook; a failed or slow alert is logged and never fails the monitor.
    webhook_timeout_s: Annotated[float, Field(gt=0.0)] = 5.0
    #: The prediction log; ``None``: the serving default (TAGOPS_SERVE_DATABASE_URL or SQLite).
    database_url: DatabaseUrl | None = Field(default=None, repr=False)
    #: How reference statistics are computed at registration (and which embedder the window uses).
    reference: ReferenceConfig = ReferenceConfig()
    #: Seeds the bootstrap, the MMD test's permutations and the window's embedding subset.
    seed: Seed = 1234


class RetrainPolicy(FrozenModel):
    """When ``tagops retrain --if-needed`` retrains (``tagops retrain`` alone always does: "manual").

    ``on_alert``: the latest ``tagops monitor`` summary of the champion raised an alarm (drift or a drop
    in F1) and is younger than ``max_summary_age_hours``; ``schedule``: the last retrain is older than
    ``interval_hours``; ``manual``: never on its own.
    """

    #: What makes ``--if-needed`` retrain: ``on_alert``, a recent monitor alarm; ``schedule``, every
    #: ``interval_hours``; ``manual``, nothing (only ``tagops retrain`` without ``--if-needed``).
    trigger: Literal["on_alert", "schedule", "manual"] = "on_alert"
    #: With ``schedule``: hours since the last retrain before the next is due (168: weekly).
    interval_hours: Annotated[float, Field(gt=0.0)] = 168.0
    #: With ``on_alert``: an alarm older than this many hours no longer triggers a retrain, since the
    #: traffic it describes may have passed.
    max_summary_age_hours: Annotated[float, Field(gt=0.0)] = 24.0
    #: Fewer trusted feedback rows than this (labeller and admin keys' labels and reviewed client labels,
    #: after one vote per key and text and the data contract): nothing to learn from, so no retrain and no
    #: automatic promotion on a trigger. Client labels waiting for review never count.
    min_feedback_rows: Annotated[int, Field(ge=0)] = 20


class RetrainConfig(FrozenModel):
    """``tagops retrain``: original data + validated feedback → challenger → two gates → champion → reload.

    The challenger must pass ``gate`` on the holdout (it may not forget the original task) *and*
    ``recent_gate`` on the recent labelled window: the newest ``recent_fraction`` of the feedback rows,
    held out of training by time, so the gain is measured on traffic the challenger never saw.
    """

    yaml_section: ClassVar[str | None] = "retrain"

    #: How the challenger is trained on the original data plus the feedback: family, split, evaluation.
    train: TrainConfig = TrainConfig()
    #: Holdout gate: a challenger may give up this much holdout F1 for what the feedback teaches it.
    gate: GateConfig = GateConfig(max_overall_f1_drop=0.01, max_class_f1_drop=0.05)
    #: Recent-window gate: overall F1 only (a class with a handful of recent rows is noise). The
    #: behavioural cases are the holdout gate's (``gate.behaviour``); checking them here too would only
    #: repeat its verdict.
    recent_gate: GateConfig = GateConfig(max_overall_f1_drop=0.0, max_class_f1_drop=1.0, behaviour=())
    #: When ``tagops retrain --if-needed`` retrains.
    policy: RetrainPolicy = RetrainPolicy()
    #: Share of the trusted feedback rows, the newest by feedback time, held out of training as the
    #: recent labelled window that ``recent_gate`` scores.
    recent_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.3
    #: The model the challenger is compared with (its version answered the feedback's predictions).
    champion_uri: str = DEFAULT_MODEL_URI
    #: The prediction log; ``None``: the serving default (TAGOPS_SERVE_DATABASE_URL or SQLite).
    database_url: DatabaseUrl | None = Field(default=None, repr=False)
    #: The running service told to reload after a promotion (``TAGOPS_RETRAIN_SERVICE_URL`` wins); the
    #: admin key is read from ``TAGOPS_RETRAIN_ADMIN_KEY`` only, never from a file. ``None``: no reload.
    service_url: str | None = None
    #: Seconds to wait for the service to answer the reload; longer than its own wait for every replica
    #: (``ServeConfig.reload_timeout_s``). A failed reload is reported: the registry has the champion.
    reload_timeout_s: Annotated[float, Field(gt=0.0)] = 120.0


class RolloutPolicy(FrozenModel):
    """When ``tagops rollout check`` promotes or aborts a running canary.

    Promote: each side has at least ``min_labelled`` predictions with a trusted label and the canary is
    no worse at 95 % confidence: the lower end of the bootstrap interval of (canary − champion) weighted
    F1 is above ``-f1_margin``. Abort: after ``min_requests`` canary requests, its error rate is above
    ``max_error_rate`` with 95 % confidence (Wilson interval) and above the champion's interval, or its
    p95 latency is above ``max_latency_ratio`` times the champion's and ``latency_slack_ms`` above it;
    or, with enough labels, it is worse by more than the margin at 95 % confidence. Otherwise: keep
    measuring.

    The two sides answer different requests, so the F1 interval is unpaired: with 400 labelled
    predictions a side at 95 % accuracy it is about ±0.03 wide. The margin is therefore a guard against a
    challenger that is clearly worse on live traffic; the fine comparison is the holdout gate, paired on
    the same rows, which ``promote`` runs as well.
    """

    #: Canary requests before an error rate or latency breach may abort the rollout.
    min_requests: Annotated[int, Field(ge=1)] = 200
    #: Predictions with a trusted label each side needs before F1 can promote or abort.
    min_labelled: Annotated[int, Field(ge=1)] = 30
    #: Weighted F1 the canary may trail the champion by: promote when the interval of the difference
    #: stays above ``-f1_margin``, abort when it lies wholly below.
    f1_margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    #: Abort when the canary's failed-request rate exceeds this with 95 % confidence (and the champion's).
    max_error_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01
    #: Abort when the canary's p95 latency exceeds the champion's times this (and by ``latency_slack_ms``).
    max_latency_ratio: Annotated[float, Field(gt=1.0)] = 1.5
    #: A p95 difference below this many milliseconds is never a breach, whatever the ratio: a model
    #: answering in a few milliseconds doubles its p95 with a thread switch or a busy neighbour.
    latency_slack_ms: Annotated[float, Field(ge=0.0)] = 25.0


class RolloutConfig(FrozenModel):
    """``tagops rollout``: a canary share of live traffic for the challenger, its evidence and the policy.

    ``promote`` runs the holdout ``gate`` too (as ``tagops promote`` does) before it moves ``champion``,
    records the live evidence in the promotion history, and reloads the service, which keeps the warm
    canary as its new champion.
    """

    yaml_section: ClassVar[str | None] = "rollout"

    #: The model to roll out; ``None``: the served model's ``challenger`` alias.
    model_uri: str | None = None
    #: Percent of requests the canary answers when ``tagops rollout start`` is given no ``--weight``.
    weight: Annotated[float, Field(gt=0.0, le=100.0)] = 10.0
    #: When ``tagops rollout check`` promotes or aborts.
    policy: RolloutPolicy = RolloutPolicy()
    #: Where the holdout comes from and how it is scored (``data``, ``evaluation``) when the holdout gate
    #: runs before a promotion; nothing is trained.
    train: TrainConfig = TrainConfig()
    #: The holdout gate the canary's model must pass before ``promote`` moves ``champion``.
    gate: GateConfig = GateConfig()
    #: Bootstrap resamples for the F1 intervals of the rollout's evidence.
    bootstrap_samples: Annotated[int, Field(ge=100)] = 1000
    #: Seeds that bootstrap, so the same evidence always gets the same decision.
    seed: Seed = 1234
    #: The prediction log; ``None``: the serving default (TAGOPS_SERVE_DATABASE_URL or SQLite).
    database_url: DatabaseUrl | None = Field(default=None, repr=False)
    #: The running service (``TAGOPS_RETRAIN_SERVICE_URL`` wins); its admin key comes from
    #: ``TAGOPS_RETRAIN_ADMIN_KEY`` only, never from a file.
    service_url: str | None = None
    #: Seconds each call to the service's admin API may take; a promotion's reload waits for every replica.
    timeout_s: Annotated[float, Field(gt=0.0)] = 120.0


_PERIOD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_PERIOD_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_period(text: str) -> float:
    """Seconds in a period written as a number and a unit: ``30s``, ``15m``, ``1.5h``, ``1d``.

    Raises:
        ValueError: the text is not one number and one unit, or the period is not positive.

    """
    match = _PERIOD.match(str(text))
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"a period is a positive number and a unit (s, m, h, d), e.g. 15m; got {text!r}")
    return float(match.group(1)) * _PERIOD_UNITS[match.group(2)]


class ScheduleConfig(FrozenModel):
    """``tagops loop run``: the loop without a person: ``monitor``, then ``retrain --if-needed``, each period.

    A turn is one monitor window (``monitor``) and one consultation of the retrain policy with that
    window's summary (``retrain.policy``); turns never overlap (a lock per home, and a registry lease
    that every machine sharing a team registry honours).
    """

    #: Time between the starts of two turns; a turn that takes longer delays the next (never two at once).
    every: str = "15m"
    #: Run each turn's monitor and retrain as ZenML pipelines (their runs and lineage in ZenML) or in this
    #: process.
    pipeline: bool = True
    #: A loop lease on a shared registry older than this is taken over (its holder died): longer than
    #: the slowest turn, a transformer retrain.
    lease_ttl_s: Annotated[float, Field(gt=0.0)] = 6 * 3600.0

    @field_validator("every")
    @classmethod
    def _period(cls, value: str) -> str:
        parse_period(value)
        return value

    @property
    def every_s(self) -> float:
        """The period in seconds."""
        return parse_period(self.every)


class SimulateConfig(FrozenModel):
    """``tagops simulate``: the stream replayed through a running service, and the loop's settings.

    In-distribution windows resample the holdout; shifted windows are dataset.csv projects rewritten in a
    vocabulary the champion never saw (every word spelled backwards: a stand-in for a new community's
    jargon or language, whose meaning only labelled examples can teach) with a changed topic mix. Their
    labels arrive as feedback one window late. The shifted holdout (the holdout rewritten the same way,
    never sent as training feedback) is what the before/after table measures.
    """

    #: Selects the model family trained as the first champion and retrained with the feedback.
    family: Literal["rules", "linear", "transformer", "ensemble"] = "linear"
    #: Items sent per window.
    window_rows: Annotated[int, Field(ge=20)] = 200
    #: Windows resampled from the holdout, sent first (no alarm expected).
    in_distribution_windows: Annotated[int, Field(ge=1)] = 2
    #: Windows of shifted traffic, each labelled one window later, that feed the retrain.
    shifted_windows: Annotated[int, Field(ge=1)] = 2
    #: Share of each tag in the shifted windows (normalised); tags left out are not sent.
    shifted_mix: dict[str, Annotated[float, Field(ge=0.0)]] = {  # noqa: RUF012 (pydantic copies defaults)
        "computer-vision": 0.45,
        "natural-language-processing": 0.3,
        "mlops": 0.1,
        "other": 0.15,
    }
    #: Items per ``/v1/predict`` request.
    request_items: Annotated[int, Field(ge=1, le=64)] = 8
    #: Requests in flight at once.
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    #: Seconds between a window's predictions and its labels (feedback is sent one window late).
    feedback_delay_s: Annotated[float, Field(ge=0.0)] = 1.0
    #: The service's port on 127.0.0.1; 0: any free port.
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    #: How the simulated service runs: ``uvicorn`` (one process, quick to start) or ``ray`` (Ray Serve).
    engine: Literal["uvicorn", "ray"] = "uvicorn"
    #: Predictions that receive a second, different label from a client key (users who disagree): they
    #: wait for review and do not train.
    conflicting_feedback: Annotated[int, Field(ge=0)] = 5
    #: The canary step: after the shadow window the challenger answers this share (percent) of one more
    #: shifted window, labelled; the rollout's evidence joins the promotion decision (an ``abort`` from
    #: ``rollout.policy`` refuses it). Large, because a simulation's window is small.
    canary_weight: Annotated[float, Field(gt=0.0, le=100.0)] = 50.0
    #: Its policy: thresholds for a window of a few dozen requests, not a day of production traffic.
    rollout: RolloutConfig = RolloutConfig(policy=RolloutPolicy(min_requests=10, min_labelled=20))
    #: Run the retrain as the ZenML pipeline (as ``tagops retrain`` does), else its stages in-process.
    pipeline: bool = True
    #: Bootstrap resamples for the intervals of the before/after table.
    bootstrap_samples: Annotated[int, Field(ge=100)] = 1000
    #: Seeds which rows each window sends and the bootstrap, so a simulation can be repeated.
    seed: Seed = 1234
    #: ``tagops monitor`` as run on each window (a window of 200 rows clears ``min_window_rows``).
    monitor: MonitorConfig = MonitorConfig(min_window_rows=100, min_feedback_rows=50)
    #: The retrain the shifted windows' feedback leads to: its gates, policy and recent window; its
    #: model family is ``family``.
    retrain: RetrainConfig = RetrainConfig()
    #: ``tagops loop run``'s period; its turns use ``monitor`` and ``retrain`` above.
    schedule: ScheduleConfig = ScheduleConfig()

    @model_validator(mode="after")
    def _mix(self) -> SimulateConfig:
        from tagops import LABELS

        unknown = sorted(set(self.shifted_mix) - set(LABELS))
        if unknown or sum(self.shifted_mix.values()) <= 0:
            raise ValueError(f"shifted_mix needs known tags with a positive total, got unknown {unknown}")
        return self
