"""Turn what a user names as "the model" into a loaded predictor.

Accepts a registry URI (``models:/tagops@champion``, ``models:/tagops/3``) or a local model folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tagops.errors import RegistryError
from tagops.model_ref import ModelRef

if TYPE_CHECKING:
    from tagops.inference.predictor import Predictor
    from tagops.settings import Settings


def load_predictor(uri: str, settings: Settings, *, threshold: float | None = None) -> Predictor:
    """Load the predictor ``uri`` names, with its registry provenance in ``metadata``."""
    from tagops.inference.predictor import Predictor

    ref = ModelRef.parse(uri)
    if ref.folder is not None:
        local = Path(ref.folder)
        if not (local / "model.json").is_file():
            raise RegistryError(f"{uri}: neither a models:/ URI nor a saved model folder")
        return Predictor.from_directory(local, threshold=threshold, metadata={"uri": uri})
    from tagops.registry.client import Registry

    registry = Registry(settings)
    version, info = registry.resolve(ref)
    return Predictor.from_directory(
        registry.download(version),
        threshold=threshold,
        metadata={
            "uri": uri,
            "name": info["name"],
            "version": version,
            "run_id": info["run_id"],
            "aliases": info["aliases"],
            "dataset_sha256": info["tags"].get("dataset_sha256"),
            "holdout_f1": info["tags"].get("holdout_f1"),
        },
    )
