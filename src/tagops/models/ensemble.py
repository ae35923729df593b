"""A weighted average of other families' probabilities (family ``ensemble``).

The default pairs the transformer (meaning from a pre-trained encoder) with the linear model (exact
words and character n-grams): their errors differ, and the average measures better than either alone
(``benchmarks/quality.py``). Saved as ``model.json`` plus one sub-folder per member under ``members/``,
each an ordinary saved model of its family, so loading stays pickle-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from tagops import LABELS
from tagops.config import EnsembleParams, TransformerParams
from tagops.models.base import TagModel, check_labels, read_model_info, write_model_info

MEMBERS_DIR = "members"


def member_dirname(index: int, family: str) -> str:
    """The sub-folder of member ``index`` (``members/0-transformer``)."""
    return f"{MEMBERS_DIR}/{index}-{family}"


class EnsembleModel:
    """Members fitted on the same texts; probabilities averaged with normalised weights."""

    family = "ensemble"

    def __init__(self, params: EnsembleParams | None = None) -> None:
        self.params = params or EnsembleParams()
        self.labels: tuple[str, ...] = LABELS
        self.members_: list[TagModel] = []

    @property
    def weights(self) -> np.ndarray:
        """Member weights summing to 1."""
        raw = np.asarray(self.params.weights or [1.0] * len(self.params.members), dtype=np.float64)
        normalised: np.ndarray = raw / raw.sum()
        return normalised

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        seed: int = 1234,
        val_texts: Sequence[str] | None = None,
        val_labels: Sequence[str] | None = None,
    ) -> Self:
        """Fit every member in this process (a transformer member also gets the validation data)."""
        from tagops.models.base import create_model

        check_labels(labels)
        members: list[TagModel] = []
        for params in self.params.members:
            model: Any = create_model(params)
            if isinstance(params, TransformerParams):
                model.fit(texts, labels, seed=seed, val_texts=val_texts, val_labels=val_labels)
            else:
                model.fit(texts, labels, seed=seed)
            members.append(model)
        self.members_ = members
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """The weighted mean of the members' probabilities, in :data:`tagops.LABELS` order."""
        if not self.members_:
            raise RuntimeError("EnsembleModel is not fitted")
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for weight, member in zip(self.weights, self.members_, strict=True):
            if weight > 0:
                out += weight * member.predict_proba(texts)
        return out

    def save(self, directory: Path) -> None:
        """Save each member into ``members/<i>-<family>`` and write the ensemble's ``model.json``."""
        if not self.members_:
            raise RuntimeError("EnsembleModel is not fitted")
        for index, member in enumerate(self.members_):
            member.save(directory / member_dirname(index, member.family))
        write_descriptor(directory, self.params)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Load the members with their own families' loaders."""
        from tagops.models.base import load_model

        info = read_model_info(directory)
        model = cls(EnsembleParams.model_validate(info["params"]))
        model.labels = tuple(info["labels"])
        model.members_ = [load_model(directory / name) for name in info["members"]]
        return model


def write_descriptor(directory: Path, params: EnsembleParams) -> None:
    """Write the ensemble's ``model.json`` over members already saved in ``directory/members``."""
    names = [member_dirname(i, m.family) for i, m in enumerate(params.members)]
    for name in names:
        read_model_info(directory / name)  # fails clearly if a member is missing
    write_model_info(
        directory,
        family="ensemble",
        labels=LABELS,
        params=params.model_dump(mode="json"),
        extra={"members": names},
    )
