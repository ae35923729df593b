"""The model protocol and the family registry.

Every family saves to a folder holding ``model.json`` (family, labels, parameters, versions) plus its own
files in safe formats (JSON, safetensors): loading never unpickles code.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

from tagops import LABELS, __version__
from tagops.errors import TagopsError, first_line

if TYPE_CHECKING:
    import numpy as np

    from tagops.config import AnyModelParams

MODEL_FILE = "model.json"


@runtime_checkable
class TagModel(Protocol):
    """What every model family implements (scikit-learn conventions: ``fit`` returns self)."""

    family: str
    labels: tuple[str, ...]

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        """Learn from raw texts (title + description) and their tags."""
        ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape ``(len(texts), len(self.labels))``, rows summing to 1."""
        ...

    def save(self, directory: Path) -> None:
        """Write the model to ``directory`` (created if needed)."""
        ...

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read a model written by :meth:`save`."""
        ...


def write_model_info(
    directory: Path,
    *,
    family: str,
    labels: Sequence[str],
    params: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the ``model.json`` descriptor common to all families."""
    directory.mkdir(parents=True, exist_ok=True)
    info = {"family": family, "labels": list(labels), "params": params, "tagops_version": __version__}
    info.update(extra or {})
    (directory / MODEL_FILE).write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")


def read_model_info(directory: Path) -> dict[str, Any]:
    """Read ``model.json``; raises a clear error when ``directory`` is not a saved model.

    Raises:
        FileNotFoundError: there is no ``model.json``.
        TagopsError: ``model.json`` is not a JSON object with a ``family`` (a damaged or foreign file).

    """
    path = directory / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: not a tagops model folder (no {MODEL_FILE})")
    try:
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TagopsError(f"{path}: damaged, not a model's descriptor ({error})") from None
    if not isinstance(info, dict) or "family" not in info:
        raise TagopsError(f"{path}: damaged, not a model's descriptor (no 'family')")
    return info


def check_labels(labels: Sequence[str]) -> None:
    """Refuse training labels outside the known set (they would silently become a fifth class)."""
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ValueError(f"unknown labels {unknown}; expected a subset of {list(LABELS)}")


#: Where each family's class lives, as ``module:Class``. Families are imported by name when first used:
#: every family imports this module, so importing them here would make each one a cycle.
FAMILIES = {
    "rules": "tagops.models.rules:RulesModel",
    "linear": "tagops.models.linear:LinearModel",
    "transformer": "tagops.models.transformer:TransformerModel",
    "ensemble": "tagops.models.ensemble:EnsembleModel",
}


def family_class(family: str) -> type[TagModel]:
    """The model class of ``family`` (imported now); :class:`ValueError` for an unknown family."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}")
    module, _, name = FAMILIES[family].partition(":")
    cls: type[TagModel] = getattr(importlib.import_module(module), name)
    return cls


def create_model(params: AnyModelParams) -> TagModel:
    """A new, unfitted model of the family ``params`` describes."""
    return family_class(params.family)(params)  # type: ignore[call-arg]


def load_model(directory: Path) -> TagModel:
    """Load any saved model, dispatching on the family recorded in ``model.json``.

    Raises:
        FileNotFoundError: ``directory`` is not a model folder (no ``model.json``).
        TagopsError: it is one but cannot be loaded (a file missing or damaged, as a partial copy
            leaves it); the message names the folder and the first line of the reason.

    """
    family = read_model_info(directory)["family"]
    try:
        cls = family_class(family)
    except ValueError:
        raise ValueError(f"{directory}: unknown model family {family!r}") from None
    try:
        return cls.load(directory)
    except TagopsError:
        raise
    except _load_failures() as error:
        raise TagopsError(
            f"{directory}: damaged model folder, cannot load it ({first_line(error)})"
        ) from error


def _load_failures() -> tuple[type[BaseException], ...]:
    """What a missing or damaged file raises while a family loads (safetensors' own error once imported)."""
    import sys

    failures: list[type[BaseException]] = [OSError, ValueError, KeyError, RuntimeError]
    safetensors = sys.modules.get("safetensors")
    if safetensors is not None and hasattr(safetensors, "SafetensorError"):
        failures.append(safetensors.SafetensorError)
    return tuple(failures)
