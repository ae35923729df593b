"""Frozen run configuration, loaded once from YAML at the edge and passed explicitly.

Ray workers and ZenML steps receive ``cfg.model_dump(mode="json")`` and validate it again, so a
config crosses process boundaries as plain data, never as a pickled object.
"""

from __future__ import annotations

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


ModelParams = Annotated[RulesParams | LinearParams, Field(discriminator="family")]


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
    models: tuple[ModelParams, ...] = (RulesParams(), LinearParams())
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

    def train_config(self, model: RulesParams | LinearParams) -> TrainConfig:
        """The single-model training config this pipeline uses for ``model``."""
        return TrainConfig(
            data=self.data,
            model=model,
            evaluation=self.evaluation,
            seed=self.seed,
            refit_full=self.refit_full,
        )


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
