"""Request and response models of the prediction API, with every input bounded.

Request bounds come from :class:`~tagops.config.ServeConfig`, so the request models are built per app by
:func:`predict_request_model`; the OpenAPI schema (and therefore /docs and schemathesis) shows the limits
the server enforces.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

#: Prediction ids are UUID4 hex strings.
PREDICTION_ID_PATTERN = r"^[0-9a-f]{32}$"
#: Tags are short label names; the model's label set is checked by the endpoint.
MAX_TAG_LENGTH = 100


def storable_text(value: str) -> str:
    """Refuse text no database can store: NUL characters and lone UTF-16 surrogates."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError("must be valid Unicode (no lone surrogates)") from error
    return value


StorableText = Annotated[str, AfterValidator(storable_text)]


class StrictModel(BaseModel):
    """Requests reject unknown fields, so a misspelt field name is an error rather than ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PredictItem(StrictModel):
    """One project to tag (the limits of this base class are the widest; each app narrows them)."""

    title: str = Field(description="Project title.")
    description: str = Field(default="", description="Project description (may be empty).")


class PredictRequest(StrictModel):
    """One or more projects to tag in one call."""

    items: list[PredictItem] = Field(description="Projects to tag, in order.")


def predict_request_model(*, max_items: int, max_text_length: int) -> type[PredictRequest]:
    """The request model for one app, with its item count and text length bounds."""
    title_field = Annotated[
        StorableText,
        Field(min_length=1, max_length=max_text_length, description="Project title (not empty)."),
    ]
    description_field = Annotated[
        StorableText, Field(max_length=max_text_length, description="Project description (may be empty).")
    ]

    class Item(PredictItem):
        title: title_field  # type: ignore[valid-type]
        description: description_field = ""  # type: ignore[valid-type]

    class Request(PredictRequest):
        items: Annotated[  # type: ignore[assignment]
            list[Item],
            Field(min_length=1, max_length=max_items, description=f"1 to {max_items} projects, in order."),
        ]

    Item.__name__ = Item.__qualname__ = "PredictItem"
    Request.__name__ = Request.__qualname__ = "PredictRequest"
    Item.model_rebuild(force=True)
    Request.model_rebuild(force=True)
    return Request


class Prediction(BaseModel):
    """The answer for one item."""

    prediction_id: str = Field(description="Id to quote in POST /v1/feedback.", pattern=PREDICTION_ID_PATTERN)
    tag: str = Field(description="Predicted tag (`other` when the model abstained).")
    confidence: float = Field(ge=0.0, le=1.0, description="Probability of the most likely tag.")
    abstained: bool = Field(description="True when confidence was below the threshold: the tag is `other`.")
    probabilities: dict[str, float] = Field(description="Probability of every tag.")


class ModelRef(BaseModel):
    """Which model answered."""

    name: str | None
    version: int | None
    alias: str | None
    family: str


class PredictResponse(BaseModel):
    """Predictions in the order of the request's items."""

    model: ModelRef
    predictions: list[Prediction]


class FeedbackRequest(StrictModel):
    """The correct tag for an earlier prediction."""

    prediction_id: str = Field(pattern=PREDICTION_ID_PATTERN, description="From a /v1/predict answer.")
    tag: StorableText = Field(min_length=1, max_length=MAX_TAG_LENGTH, description="The correct tag.")


class FeedbackResponse(BaseModel):
    """Stored feedback."""

    feedback_id: str
    prediction_id: str
    tag: str
    #: ``trusted``: training may use it; ``pending_review``: it waits until a person accepts it
    #: (``tagops feedback review``), as every label from a ``client`` key does.
    status: Literal["trusted", "pending_review"]


class ModelInfo(BaseModel):
    """The served model and where it came from."""

    name: str | None
    version: int | None
    alias: str | None
    uri: str
    family: str
    labels: list[str]
    threshold: float | None = Field(description="Answers below this confidence abstain to `other`.")
    threshold_source: str | None = Field(
        default=None, description="`model` (chosen on validation, saved with it), `override` or `none`."
    )
    temperature: float | None = Field(default=None, description="The model's calibration temperature.")
    run_id: str | None
    dataset_sha256: str | None
    holdout_metrics: dict[str, float]
    loaded_at: str
    replica: str
    shadow: ModelRef | None = Field(
        default=None, description="The model scoring copies of requests in shadow (never returned)."
    )
    canary: ModelRef | None = Field(
        default=None, description="The challenger answering `canary_weight` % of requests in a rollout."
    )
    canary_weight: float = Field(default=0.0, description="The canary's share of requests, in percent.")


class RolloutRequest(BaseModel):
    """Start a canary rollout, or change the share of the running one."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str | None = Field(
        default=None,
        max_length=1000,
        description="The model to roll out (default: the served model's `challenger` alias).",
    )
    weight: float = Field(gt=0.0, le=100.0, description="Percent of requests the canary answers.")


class RolloutState(BaseModel):
    """A canary rollout as stored: the two models, the share, and each side's requests."""

    state: Literal["active", "promoted", "aborted"]
    champion_uri: str
    champion_version: int | None
    canary_uri: str
    canary_version: int | None
    weight: float
    started_at: str
    ended_at: str | None
    reason: str | None
    champion_answered: int
    champion_failed: int
    canary_answered: int
    canary_failed: int


class ReplicaSync(BaseModel):
    """How many live replicas serve the version a reload switched to."""

    replicas: int
    on_version: int


class ReloadResponse(BaseModel):
    """Outcome of a reload: the model before and after, and how far the other replicas have followed."""

    previous: ModelRef
    current: ModelRef
    changed: bool
    sync: ReplicaSync
    shadow: ModelRef | None = Field(default=None, description="The shadow model after the reload, if any.")


class Status(BaseModel):
    """Liveness or readiness."""

    status: str
    detail: str | None = None


class ErrorResponse(BaseModel):
    """Every error answer: a message, never a stack trace."""

    detail: Any = Field(description="What was wrong, naming the field where there is one.")
    request_id: str | None = None
