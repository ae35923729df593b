"""Where a served process keeps traced networks, so that a restart loads them without transformers.

A transformer's network is traced (TorchScript) on its first prediction (:mod:`tagops.models.transformer
.inference`). Inside :func:`traced_networks_in` a transformer model saves that trace to the folder given,
keyed by its weights, configuration and the torch version, and a later load of the same model in that
folder reads the trace instead of rebuilding the network: importing transformers' modelling code takes
seconds, most of a server's start from a warm model cache (``benchmarks/serve_defaults.py``). Serving sets
it (``TAGOPS_HOME/models/traced``); training, evaluation and batch prediction load models as saved.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

_FOLDER: ContextVar[Path | None] = ContextVar("tagops_trace_cache", default=None)


@contextmanager
def traced_networks_in(folder: Path) -> Iterator[None]:
    """Models loaded in this block (this thread) keep and reuse traced networks in ``folder``."""
    token = _FOLDER.set(folder)
    try:
        yield
    finally:
        _FOLDER.reset(token)


def trace_cache_dir() -> Path | None:
    """The folder set by :func:`traced_networks_in` around this load, if any."""
    return _FOLDER.get()
