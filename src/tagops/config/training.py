"""Training, evaluation, the promotion gate and tuning."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from tagops.config.base import FrozenModel
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

    source_dir: Path | None = None
    dataset_file: str = "dataset.csv"
    holdout_file: str = "holdout.csv"
    val_size: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    seed: int = 1234


class EvalConfig(FrozenModel):
    """How evaluation is computed."""

    #: Abstain to ``other`` below this confidence. ``None``: the model's own threshold (what serving
    #: uses by default), so reports and the gate score a model as it answers; ``0``: never abstain.
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    bootstrap_samples: Annotated[int, Field(ge=0)] = 1000
    short_text_words: Annotated[int, Field(ge=1)] = 8
    calibration_bins: Annotated[int, Field(ge=2)] = 10
    seed: int = 1234


class AugmentConfig(FrozenModel):
    """Training-data augmentation toward short text (``tagops.data.augment``); training rows only."""

    #: ``short``: add short-form copies (title alone, one line, package name and a few words, cut
    #: mid-word) of a share of the training rows; ``none``: train on the rows as they are.
    recipe: Literal["none", "short"] = "none"
    #: The share of training rows that get one short-form copy.
    fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5


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

    data: DataConfig = DataConfig()
    model: ModelParams = LinearParams()
    evaluation: EvalConfig = EvalConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    augmentation: AugmentConfig = AugmentConfig()
    seed: int = 1234
    refit_full: bool = True


class PipelineConfig(FrozenModel):
    """The training pipeline: train each family, evaluate on holdout, register, gate."""

    data: DataConfig = DataConfig()
    models: tuple[ModelParams, ...] = (RulesParams(), LinearParams(), TransformerParams(), EnsembleParams())
    evaluation: EvalConfig = EvalConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    augmentation: AugmentConfig = AugmentConfig()
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
            calibration=self.calibration,
            augmentation=self.augmentation,
            seed=self.seed,
            refit_full=self.refit_full,
        )


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
    calibration: CalibrationConfig = CalibrationConfig()
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
