"""Recording a model's reference statistics at registration, for ``tagops monitor`` to compare with.

The statistics themselves are computed in :mod:`tagops.monitoring.reference`; this module runs the model
on the holdout and stores the result in the model's MLflow run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagops.config import ReferenceConfig
    from tagops.data.stages import DataSnapshot
    from tagops.registry.client import Registry

logger = logging.getLogger(__name__)


def reference_stage(
    model_dir: Path, data: DataSnapshot, cfg: ReferenceConfig, *, holdout_f1: float | None = None
) -> dict[str, Any]:
    """Reference statistics of a saved model: its answers on the holdout, the vocabulary of dataset.csv.

    The holdout is the one labelled set the model never trained on, so its confidence there is what
    production should look like; the vocabulary comes from the training texts, so unknown words in
    traffic are words the model never saw.
    """
    from tagops.data.validate import load_projects
    from tagops.inference.predictor import Predictor
    from tagops.models.base import read_model_info
    from tagops.monitoring.reference import create_embedder, reference_stats

    started = time.perf_counter()
    dataset = load_projects(data.dataset_path)
    holdout = load_projects(data.holdout_path)
    predictor = Predictor.from_directory(model_dir)
    texts = Predictor.texts(holdout["title"].tolist(), holdout["description"].tolist())
    proba = predictor.proba(texts)  # calibrated, as serving logs them
    labels = list(predictor.model.labels)
    stats = reference_stats(
        texts,
        [labels[i] for i in proba.argmax(axis=1)],
        proba.max(axis=1).tolist(),
        holdout["tag"].tolist(),
        create_embedder(cfg.embedder),
        vocabulary_texts=Predictor.texts(dataset["title"].tolist(), dataset["description"].tolist()),
        cfg=cfg,
        holdout_f1=holdout_f1,
        model={
            "family": read_model_info(model_dir).get("family"),
            "dataset_sha256": data.dataset_sha256,
            "holdout_sha256": data.holdout_sha256,
        },
    )
    logger.info("reference statistics (%s) in %.1fs", cfg.embedder, time.perf_counter() - started)
    return stats


def log_reference(
    registry: Registry, model_dir: Path, data: DataSnapshot, cfg: ReferenceConfig, *, holdout_f1: float
) -> bool:
    """Store ``reference_stats.json`` in the active run; a failure is logged and does not stop registering.

    Monitoring is auxiliary to the model: a model without a reference can still serve, and
    ``tagops monitor`` then says that its reference statistics are missing.
    """
    from tagops.registry.client import REFERENCE_STATS_FILE, REFERENCE_STATS_TAG

    try:
        stats = reference_stage(model_dir, data, cfg, holdout_f1=holdout_f1)
        registry.log_dict(stats, REFERENCE_STATS_FILE)
    except Exception:
        logger.exception("reference statistics not recorded; tagops monitor cannot check this model")
        return False
    registry.set_tags({REFERENCE_STATS_TAG: REFERENCE_STATS_FILE})
    return True
