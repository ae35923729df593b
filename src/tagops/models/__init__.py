"""Model families behind one protocol: ``fit``, ``predict_proba``, ``save``, ``load``."""

from tagops.models.base import MODEL_FILE, TagModel, create_model, load_model, read_model_info

__all__ = ["MODEL_FILE", "TagModel", "create_model", "load_model", "read_model_info"]
