"""The transformer family: network, training, CPU inference, the model and its Ray Train driver."""

from tagops.models.transformer.model import TransformerModel

__all__ = ["TransformerModel"]
