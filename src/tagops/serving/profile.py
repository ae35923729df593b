"""Serving settings that fit the served model: chosen from its family unless the operator's config sets them.

The settings that decide a model's serving speed (batch gate, CPUs per replica, where inference runs) are
not the same for a millisecond linear model and a transformer: waiting for clients to come back idles a
replica whose batches take a millisecond, and is what keeps a transformer's batches full at 32 clients.
``tagops serve`` therefore loads the model first, then fills every such field the operator's config did
not set (:attr:`pydantic.BaseModel.model_fields_set`: a field written in the YAML file or given on the
command line counts as set, even at its default value) with the measured best for the model's family
(``benchmarks/serve.py``), and prints what it chose and why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagops.config import ServeConfig

#: The ServeConfig fields a model's family decides when the config leaves them out.
TUNED_FIELDS = ("batch_hold_fraction", "num_cpus", "predict_in_thread")

#: A replica of a transformer uses at most this many CPUs (torch threads); a larger node is better used
#: by more replicas (``num_replicas`` or ``autoscaling``) than by more threads on batches of short texts.
TRANSFORMER_MAX_CPUS = 4.0


@dataclass(frozen=True)
class Choice:
    """One tuned setting: its value, and whether the config or the model's family decided it."""

    field: str
    value: Any
    #: ``config`` (the operator set it) or ``model`` (the model's family decided it).
    source: str
    reason: str

    def line(self) -> str:
        """``field=value (why)`` for the console."""
        return f"{self.field}={self.value} ({self.reason})"


#: The best measured settings for one kind of model: field -> (value, reason).
Profile = dict[str, tuple[Any, str]]


def _light() -> Profile:
    return {
        "batch_hold_fraction": (
            0.0,
            "batches take about a millisecond: holding them for returning clients only idles the replica",
        ),
        "num_cpus": (1.0, "a millisecond model needs one CPU per replica; more replicas scale it"),
        "predict_in_thread": (False, "inference on the event loop: no hand-off per batch"),
    }


def _transformer(cpus: float) -> Profile:
    threads = max(1.0, min(float(int(cpus)), TRANSFORMER_MAX_CPUS))
    return {
        "batch_hold_fraction": (
            0.25,
            "batches take tens of milliseconds: clients that send one request after another are "
            "held together in one full batch instead of two half-size ones",
        ),
        "num_cpus": (
            threads,
            f"torch threads on up to {TRANSFORMER_MAX_CPUS:g} of the node's {cpus:g} CPUs per replica",
        ),
        "predict_in_thread": (
            False,
            "inference on the event loop: in a worker thread batches form while the previous one runs "
            "and stay small",
        ),
    }


def profile_for(families: Iterable[str], *, cpus: float) -> Profile:
    """The profile of a model made of ``families`` (an ensemble lists its members' too)."""
    return _transformer(cpus) if "transformer" in set(families) else _light()


def model_families(description: dict[str, Any]) -> list[str]:
    """A model's family and, for an ensemble, its members' (from ``predictor.describe()``)."""
    return [str(description.get("family", "unknown")), *map(str, description.get("members", []))]


def fit_to_model(
    cfg: ServeConfig,
    description: dict[str, Any],
    *,
    cpus: float,
    fields: Iterable[str] = TUNED_FIELDS,
) -> tuple[ServeConfig, list[Choice]]:
    """``cfg`` with each of ``fields`` it leaves unset chosen for the model ``description`` describes.

    Returns the config to serve with and one :class:`Choice` per field, in ``fields`` order. ``cpus``: the
    CPUs replicas may use (the node's, or the Ray cluster's).
    """
    families = model_families(description)
    profile = profile_for(families, cpus=cpus)
    chosen: dict[str, Any] = {}
    choices: list[Choice] = []
    for name in fields:
        if name in cfg.model_fields_set:
            choices.append(Choice(name, getattr(cfg, name), "config", "set in the serving config"))
            continue
        value, why = profile[name]
        chosen[name] = value
        choices.append(Choice(name, value, "model", f"{'+'.join(dict.fromkeys(families))} model: {why}"))
    if not chosen:
        return cfg, choices
    # model_validate keeps the operator's fields marked as set; the chosen ones are marked too, so fitting
    # the result again changes nothing.
    fitted = type(cfg).model_validate({**cfg.model_dump(exclude_unset=True), **chosen})
    return fitted, choices
