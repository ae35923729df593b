"""Training, evaluation, the promotion gate and tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from tagops.config.base import FrozenModel, Seed
from tagops.config.models import (
    AnyModelParams,
    EnsembleParams,
    LinearParams,
    ModelParams,
    RulesParams,
    TransformerParams,
)


class DataConfig(FrozenModel):
    """Which files to use and how to split them.

    By default the files are pulled (and checksum-verified) into ``TAGOPS_HOME``; with ``source_dir`` they
    are read from that folder as they are (your own data, or the test fixtures) and identified by hash.
    """

    #: A folder to read ``dataset_file`` and ``holdout_file`` from as they are; ``None``: the files are
    #: pulled and checksum-verified into TAGOPS_HOME.
    source_dir: Path | None = None
    #: The labelled file models learn from: split into train and validation, and used whole by the refit.
    dataset_file: str = "dataset.csv"
    #: The labelled file kept out of all training: the evaluation and the promotion gate score on it.
    holdout_file: str = "holdout.csv"
    #: Share of ``dataset_file`` held out as validation (stratified by tag), to measure, calibrate and stop
    #: training early: 0.2 is an 80/20 split.
    val_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    #: Seeds the train/validation split, apart from the training seed, so changing one keeps the other.
    seed: Seed = 1234
    #: Train from a warehouse snapshot instead of the files: its id, a unique prefix of one, or
    #: ``latest`` (``tagops data snapshots`` lists them); ``build``: build the warehouse from the raw
    #: sources first (``source_dir`` when set) and use the snapshot it makes. The snapshot's training set
    #: and holdout replace ``dataset_file`` and ``holdout_file``, and the run records its id.
    snapshot: Annotated[str, Field(pattern=r"^[A-Za-z0-9]+$")] | None = None
    #: With ``snapshot: build``: add the prediction log's trusted feedback to the training set, as
    #: ``tagops data build`` does.
    snapshot_feedback: bool = True


class EvalConfig(FrozenModel):
    """How evaluation is computed."""

    #: Abstain to ``other`` below this confidence. ``None``: the model's own threshold (what serving
    #: uses by default), so reports and the gate score a model as it answers; ``0``: never abstain.
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    #: Bootstrap resamples of the evaluation rows for the 95 % intervals of F1 and calibration error;
    #: 0: no intervals.
    bootstrap_samples: Annotated[int, Field(ge=0)] = 1000
    #: Texts of fewer words than this make up the ``short_text`` slice of the report.
    short_text_words: Annotated[int, Field(ge=1)] = 8
    #: Equal-width confidence bins of the calibration error (ECE) and the reliability diagram.
    calibration_bins: Annotated[int, Field(ge=2)] = 10
    #: Seeds the bootstrap and the robustness transforms, so the same model always gets the same report.
    seed: Seed = 1234


class AugmentConfig(FrozenModel):
    """Training-data augmentation toward short text (``tagops.data.augment``); training rows only."""

    #: ``short``: add short-form copies (title alone, one line, package name and a few words, cut
    #: mid-word) of a share of the training rows; ``none``: train on the rows as they are.
    recipe: Literal["none", "short"] = "none"
    #: The share of training rows that get one short-form copy.
    fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    #: Also train on the `other` posts written for the topics the data never shows (tabular data,
    #: recommenders, audio, causal inference...; ``tagops/data/other_topics/``), so that `other` means
    #: what the label guide says rather than dataset.csv's three topics. Costs in-distribution F1
    #: (``docs/performance.md``, Unseen topics of `other`). For one family alone: ``other_topics`` of
    #: its params (linear, transformer).
    other_topics: bool = False


class CalibrationConfig(FrozenModel):
    """How a model's calibration is fitted on validation after training (``tagops.models.calibration``)."""

    #: Fit a temperature and choose an abstention threshold; ``False`` saves models without calibration.
    enabled: bool = True
    #: The threshold rule: the lowest threshold whose validation macro F1 as served is within this of
    #: the best threshold's, so the model abstains only for a validation gain larger than this. One row
    #: of a 150-row validation split moves macro F1 by about 0.001-0.005: a gain that small is noise.
    threshold_tolerance: Annotated[float, Field(ge=0.0, le=0.2)] = 0.005


#: The kinds of behavioural case (:mod:`tagops.workloads.behaviour`).
BehaviourKind = Literal["minimum_functionality", "invariance", "directional"]
BEHAVIOUR_KINDS: tuple[BehaviourKind, ...] = ("minimum_functionality", "invariance", "directional")


class GateConfig(FrozenModel):
    """Promotion gate: how much worse than the champion a challenger may be and still be promoted."""

    #: Overall (weighted) F1 on the evaluation rows that a challenger may lose against the champion;
    #: 0: it may never be worse.
    max_overall_f1_drop: Annotated[float, Field(ge=0.0)] = 0.0
    #: F1 any one tag may lose against the champion, so a challenger cannot trade a tag away for a
    #: better total (see ``class_drop_confidence``).
    max_class_f1_drop: Annotated[float, Field(ge=0.0)] = 0.05
    #: A class whose F1 falls by more than ``max_class_f1_drop`` refuses the challenger only if F1 also
    #: falls in at least this share of paired bootstrap resamples of the evaluation rows: on a class of
    #: 16 holdout items two items changing sides is a 0.1 drop, which alone says little. ``None``: any
    #: drop beyond the margin refuses (also when a report carries no rows to resample).
    class_drop_confidence: Annotated[float, Field(gt=0.5, lt=1.0)] | None = 0.95
    #: Resamples for ``class_drop_confidence`` (seeded: the same reports always get the same verdict).
    bootstrap_samples: Annotated[int, Field(ge=100)] = 2000
    #: Seeds the paired bootstrap of ``class_drop_confidence``.
    seed: Seed = 1234
    #: Kinds of behavioural case (:data:`tagops.workloads.behaviour.CASES`) the challenger must pass: one
    #: failing case of a listed kind refuses it, whatever its F1 (also with no champion yet). Empty: the
    #: behavioural check is not run.
    behaviour: tuple[BehaviourKind, ...] = BEHAVIOUR_KINDS

    @field_validator("behaviour")
    @classmethod
    def _each_kind_once(cls, kinds: tuple[BehaviourKind, ...]) -> tuple[BehaviourKind, ...]:
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"each behaviour kind may appear once, got {list(kinds)}")
        return kinds


class TrainConfig(FrozenModel):
    """One training run: data, model family and seed."""

    #: The data files and the train/validation split.
    data: DataConfig = DataConfig()
    #: The model to train: its ``family`` and that family's parameters.
    model: ModelParams = LinearParams()
    #: How the model is scored on validation and on the holdout.
    evaluation: EvalConfig = EvalConfig()
    #: The temperature and abstention threshold fitted on validation after training.
    calibration: CalibrationConfig = CalibrationConfig()
    #: Augmentation of the training rows toward short text.
    augmentation: AugmentConfig = AugmentConfig()
    #: Seeds the model's training (for the transformer: initialisation, batch order, dropout) and the
    #: augmentation.
    seed: Seed = 1234
    #: After validation has measured the model, refit it on all of dataset.csv (see
    #: ``PipelineConfig.refit_full``).
    refit_full: bool = True


class PipelineConfig(FrozenModel):
    """The training pipeline: train each family, evaluate on holdout, register, gate."""

    #: The data files and the train/validation split, shared by every family.
    data: DataConfig = DataConfig()
    #: The families to train, each once, in order: each is registered and gated against the champion
    #: before it, so the best that passes ends as champion.
    models: tuple[ModelParams, ...] = (RulesParams(), LinearParams(), TransformerParams(), EnsembleParams())
    #: How each model is scored on validation and on the holdout, and by the gate.
    evaluation: EvalConfig = EvalConfig()
    #: The temperature and abstention threshold fitted on validation for each model.
    calibration: CalibrationConfig = CalibrationConfig()
    #: Augmentation of the training rows toward short text, for every family.
    augmentation: AugmentConfig = AugmentConfig()
    #: The gate each new model must pass against the champion to be promoted.
    gate: GateConfig = GateConfig()
    #: Seeds every family's training and the augmentation (the split has its own, ``data.seed``).
    seed: Seed = 1234
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
            calibration=self.calibration,
            augmentation=self.augmentation,
            seed=self.seed,
            refit_full=self.refit_full,
        )


class FloatRange(FrozenModel):
    """A continuous search dimension, sampled uniformly (or log-uniformly) between ``low`` and ``high``."""

    #: The lowest value drawn.
    low: float
    #: The highest value drawn.
    high: float
    #: Draw uniformly on a log scale, for values that matter by their order of magnitude (learning
    #: rates, ``C``); needs ``low`` above 0.
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"need 0 < low < high for a log range, low < high otherwise: {self}")
        return self


class IntRange(FrozenModel):
    """An integer search dimension, ``low`` to ``high`` inclusive."""

    #: The lowest value drawn.
    low: int
    #: The highest value drawn (inclusive).
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low must not exceed high: {self}")
        return self


class TransformerSearchSpace(FrozenModel):
    """What ``tagops tune --model transformer`` searches; the rest comes from ``TuneConfig.transformer``."""

    #: Range of the encoder's learning rate.
    lr: FloatRange = FloatRange(low=2e-5, high=3e-4, log=True)
    #: Range of the new head's learning rate (``head_lr``).
    head_lr: FloatRange = FloatRange(low=3e-4, high=3e-2, log=True)
    #: Range of the dropout before the head.
    dropout: FloatRange = FloatRange(low=0.0, high=0.3)
    #: Range of the AdamW weight decay.
    weight_decay: FloatRange = FloatRange(low=1e-4, high=0.1, log=True)
    #: The most epochs a trial may train (ASHA stops the weak ones sooner).
    epochs: IntRange = IntRange(low=3, high=8)
    #: Range of the early-stopping patience: epochs without a better validation F1 before a trial stops.
    patience: IntRange = IntRange(low=1, high=3)
    #: Token lengths (``max_length``) to choose from.
    max_length: tuple[int, ...] = (64, 128)
    #: Batch sizes to choose from.
    batch_size: tuple[int, ...] = (16, 32)
    #: Top-layer counts to choose from (``trainable_layers``; ``null``: every layer), e.g.
    #: ``[null, 2, 3]``; empty: not searched, every trial keeps ``TuneConfig.transformer``'s value.
    trainable_layers: tuple[Annotated[int, Field(ge=1)] | None, ...] = ()


class LinearSearchSpace(FrozenModel):
    """What ``tagops tune --model linear`` searches."""

    #: Range of ``C``, the inverse regularisation strength of the logistic regression.
    C: FloatRange = FloatRange(low=0.5, high=100.0, log=True)
    #: Word n-gram ranges to choose from.
    word_ngram_range: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (1, 3))
    #: Character n-gram ranges to choose from.
    char_ngram_range: tuple[tuple[int, int], ...] = ((2, 4), (2, 5), (3, 6), (1, 5))


class TuneConfig(FrozenModel):
    """Hyper-parameter search: Optuna proposes, ASHA stops weak trials early, the best is registered.

    The family's defaults (``transformer`` / ``linear``) are evaluated as the first trial, so the best
    trial is never worse than the default on validation.
    """

    #: The data files and the train/validation split: trials are compared on validation F1.
    data: DataConfig = DataConfig()
    #: How the best trial's model is scored on validation and on the holdout, and by the gate.
    evaluation: EvalConfig = EvalConfig()
    #: The temperature and abstention threshold fitted for the best trial's model.
    calibration: CalibrationConfig = CalibrationConfig()
    #: The gate the best trial's model must pass against the champion to be promoted.
    gate: GateConfig = GateConfig()
    #: Seeds the search (Optuna's sampler) and every trial's training, so a search can be repeated.
    seed: Seed = 1234
    #: Refit the best trial's model on all of dataset.csv before it is registered (see
    #: ``PipelineConfig.refit_full``).
    refit_full: bool = True
    #: Trials in the search, the family's defaults (the first trial) included.
    trials: Annotated[int, Field(ge=1)] = 8
    #: Trials at once; ``None``: as many as the cluster's CPUs allow at ``cpus_per_trial`` each.
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    #: CPUs (and torch threads) per trial; ``None``: 2 for the transformer, 1 for linear.
    cpus_per_trial: Annotated[int, Field(ge=1)] | None = None
    #: Epochs every transformer trial trains before ASHA may stop it: a good setting's first epochs can
    #: trail a bad one's. A linear trial reports once, so ASHA never stops it early.
    grace_period: Annotated[int, Field(ge=1)] = 2
    #: ASHA lets one trial in this many go on past each of its rungs: larger stops weak trials sooner.
    reduction_factor: Annotated[int, Field(ge=2)] = 2
    #: The transformer's parameters: the first trial as they are, the others with the sampled values of
    #: ``transformer_space`` in place.
    transformer: TransformerParams = TransformerParams()
    #: The linear model's parameters: the first trial as they are, the others with the sampled values of
    #: ``linear_space`` in place.
    linear: LinearParams = LinearParams()
    #: What ``tagops tune --model transformer`` searches.
    transformer_space: TransformerSearchSpace = TransformerSearchSpace()
    #: What ``tagops tune --model linear`` searches.
    linear_space: LinearSearchSpace = LinearSearchSpace()

    @model_validator(mode="after")
    def _trainable_layer_choices(self) -> TuneConfig:
        choices = self.transformer_space.trainable_layers
        if choices and self.transformer.trainable_layers not in choices:
            raise ValueError(
                f"transformer.trainable_layers ({self.transformer.trainable_layers}) is not one of "
                f"transformer_space.trainable_layers {list(choices)}: the defaults are the first trial"
            )
        base = self.transformer.model_dump(mode="json")
        for choice in choices:
            try:
                TransformerParams.model_validate({**base, "trainable_layers": choice})
            except ValidationError as error:
                reason = error.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(f"transformer_space.trainable_layers {choice}: {reason}") from None
        return self
