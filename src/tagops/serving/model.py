"""The served model: what a predictor offers, how a loader finds one, the loaded model the API reports.

A :class:`ServedModel` is immutable; a replica (and its shadow) switch models by replacing the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tagops.model_ref import ModelRef
from tagops.predlog.schema import utcnow


class PredictorLike(Protocol):
    """What the service needs of a predictor (a ``Predictor`` or a test double)."""

    @property
    def metadata(self) -> dict[str, Any]:
        """Provenance: registry name, version, run id, dataset hash, holdout metrics."""
        ...

    def predict(self, titles: Sequence[str], descriptions: Sequence[str]) -> list[dict[str, Any]]:
        """Tag, confidence, abstained and probabilities per item."""
        ...

    def describe(self) -> dict[str, Any]:
        """Family, labels, threshold and metadata."""
        ...


class ModelLoader(Protocol):
    """Resolves and loads the predictor a URI names."""

    def resolve(self, uri: str) -> str:
        """The URI naming exactly the model ``uri`` names now (an alias becomes its version)."""
        ...

    def load(self, uri: str) -> PredictorLike:
        """Load (and download if needed) the model ``uri`` names."""
        ...


def concrete_uri(predictor: PredictorLike, fallback: str) -> str:
    """A URI that names exactly this model: ``models:/NAME/VERSION`` when it came from the registry."""
    meta = predictor.metadata
    if meta.get("name") and meta.get("version") is not None:
        return str(ModelRef.registered(meta["name"], meta["version"]))
    return str(meta.get("uri") or meta.get("path") or fallback)


@dataclass(frozen=True)
class ServedModel:
    """A loaded predictor with what the API reports about it."""

    predictor: PredictorLike
    uri: str
    alias: str | None
    loaded_at: datetime = field(default_factory=utcnow)

    @property
    def info(self) -> dict[str, Any]:
        """The predictor's own description."""
        return self.predictor.describe()

    @property
    def name(self) -> str | None:
        """Registered model name."""
        value = self.predictor.metadata.get("name")
        return None if value is None else str(value)

    @property
    def version(self) -> int | None:
        """Registry version (``None`` for a model loaded from a folder)."""
        value = self.predictor.metadata.get("version")
        return None if value is None else int(value)

    @property
    def family(self) -> str:
        """Model family (rules, linear, transformer)."""
        return str(self.info.get("family", "unknown"))

    @property
    def labels(self) -> list[str]:
        """The tags the model can answer."""
        return [str(label) for label in self.info.get("labels", [])]

    @property
    def holdout_metrics(self) -> dict[str, float]:
        """Holdout metrics recorded at training time (as many as the registry has)."""
        meta = self.predictor.metadata
        metrics = meta.get("holdout_metrics")
        if isinstance(metrics, dict) and metrics:
            return {str(k): float(v) for k, v in metrics.items()}
        if meta.get("holdout_f1") is not None:
            return {"overall.f1": float(meta["holdout_f1"])}
        return {}

    def ref(self) -> dict[str, Any]:
        """Name, version, alias and family."""
        return {"name": self.name, "version": self.version, "alias": self.alias, "family": self.family}


#: The text of the one prediction that warms a model before it takes traffic.
WARM_UP_TITLE = "Warm-up request"


def warm(model: ServedModel) -> None:
    """Run one prediction so the first real request does not pay for lazy initialisation."""
    model.predictor.predict([WARM_UP_TITLE], [""])


def load_warm(loader: ModelLoader, target: str, alias: str | None) -> ServedModel:
    """Load the model ``target`` names and warm it, ready to answer beside the served one."""
    predictor = loader.load(target)
    model = ServedModel(predictor, concrete_uri(predictor, target), alias)
    warm(model)
    return model
