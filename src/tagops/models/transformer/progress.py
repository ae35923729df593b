"""Who follows a transformer's training, epoch by epoch: a listener its caller sets around the run.

Training is reached through layers that pass no progress callback (the training plan, its stages, the
pipeline's steps), so a caller that wants one (`tagops train` drawing a bar) sets a listener for a block
of code with :func:`epoch_listener`; both training paths call it after each epoch: in process
(:meth:`TransformerModel.fit <tagops.models.transformer.model.TransformerModel.fit>`) and on Ray Train (the
driver's :class:`~tagops.models.transformer.ray_train.EpochLog`). Without one, nothing is called.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar

logger = logging.getLogger(__name__)

#: Called with the epoch just finished (from 1) and the most epochs the run trains.
EpochListener = Callable[[int, int], None]

_LISTENER: ContextVar[EpochListener | None] = ContextVar("tagops_epoch_listener", default=None)


@contextlib.contextmanager
def epoch_listener(listener: EpochListener | None) -> Iterator[None]:
    """Within the block, training in this context calls ``listener`` after each epoch (``None``: nobody)."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def current_listener() -> EpochListener | None:
    """The listener set for this context; a thread the run starts takes it along explicitly."""
    return _LISTENER.get()


def notify(listener: EpochListener | None, epoch: int, epochs: int) -> None:
    """Tell ``listener`` that ``epoch`` of ``epochs`` finished; its errors never fail the training run."""
    if listener is None:
        return
    try:
        listener(epoch, epochs)
    except Exception as error:
        logger.debug("the epoch listener failed: %s", error)
