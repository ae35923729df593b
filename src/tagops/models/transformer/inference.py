"""CPU inference for the transformer family: a traced network, batches spread over worker threads."""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from tagops.models.transformer.network import PREDICT_BATCH_SIZE, TextEncoder, array_batches, trim_batch

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ CPU inference
#: Items per chunk on average when a big batch is split for the CPU inference workers: small chunks on
#: single-threaded workers beat one sorted batch on intra-op threads (``benchmarks/serve.py`` measures it).
MAX_CHUNK_ITEMS = 16
#: Chunks per worker at least, so that a worker slowed by other work is caught up by the others.
CHUNKS_PER_WORKER = 4
#: Texts no trace is accepted without: a padded batch, an unpadded single text and a re-ordering.
PROBE_TEXTS = (
    "tagops",
    "Tagging machine learning projects by topic from a title and a description, on a laptop or a cluster.",
    "Object detection on edge devices",
)
#: Largest difference in logits between the traced and the eager network on the probes.
TRACE_TOLERANCE = 1e-4


def chunk_bounds(lengths: np.ndarray, workers: int) -> list[tuple[int, int]]:
    """Chunks of rows sorted by ascending token count, as ``(start, stop)``, longest texts first.

    Each chunk holds about the same number of tokens (the work, as padding within a sorted chunk is
    small), and the workers take them longest first, so no worker is left with the batch's longest texts
    at the end while the others wait (chunks of equal row counts in ascending order leave the workers
    idle more often; ``benchmarks/serve.py`` measures the throughput). There are
    :data:`CHUNKS_PER_WORKER` chunks per worker or more (about :data:`MAX_CHUNK_ITEMS` items each),
    and at most one per two rows.
    """
    rows = len(lengths)
    parts = max(1, min(rows // 2, max(CHUNKS_PER_WORKER * workers, math.ceil(rows / MAX_CHUNK_ITEMS))))
    cumulative = np.cumsum(np.maximum(lengths, 1), dtype=np.float64)
    targets = cumulative[-1] * np.arange(1, parts) / parts
    cuts = [0, *(int(c) + 1 for c in np.searchsorted(cumulative, targets)), rows]
    bounds = [(a, b) for a, b in itertools.pairwise(cuts) if b > a]
    return bounds[::-1]


def _logits(network: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
    """One batch's logits (padding columns every row shares dropped), float32."""
    import torch

    trimmed = trim_batch({k: torch.as_tensor(batch[k]) for k in ("input_ids", "attention_mask")})
    with torch.inference_mode():
        result: np.ndarray = network(trimmed["input_ids"], trimmed["attention_mask"]).float().numpy()
    return result


def trace_classifier(module: Any, encoder: TextEncoder) -> Any | None:
    """A TorchScript trace of the classifier that agrees with it on :data:`PROBE_TEXTS`, else ``None``.

    Why: the eager network runs each layer through Python, so it holds the GIL between operators;
    the trace runs them in C++ without it. Two inference threads, or an inference thread and a
    server's event loop, then stop queueing for the GIL: single items and batches on several workers
    both run faster traced (``benchmarks/serve.py`` measures latency and throughput). A trace records
    one run, so Python branches in the encoder's code are frozen: it is used only when it matches the
    eager network on padded, unpadded and re-ordered probes; otherwise the eager network is used.
    ``torch.jit.trace`` is deprecated in favour of ``torch.export``, whose programs still call each
    operator from Python unless compiled ahead of time (AOTInductor: a C++ toolchain at load time).
    torch is pinned, and the probe check catches a trace gone wrong.
    """
    import warnings

    import torch

    probes = encoder.encode(list(PROBE_TEXTS))
    order = np.array([2, 0, 1])
    checks = [probes, {k: v[:1] for k, v in probes.items()}, {k: v[order] for k, v in probes.items()}]
    try:
        example = trim_batch({k: torch.as_tensor(probes[k]) for k in ("input_ids", "attention_mask")})
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # deprecation and "trace might not generalize": checked below
            traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                module, (example["input_ids"], example["attention_mask"]), check_trace=False, strict=False
            )
            differences = [
                float(np.abs(_logits(traced, batch) - _logits(module, batch)).max()) for batch in checks
            ]
    except Exception as error:  # any model the tracer cannot follow runs eagerly
        logger.warning("inference runs the eager network: tracing failed (%s)", error)
        return None
    if max(differences) > TRACE_TOLERANCE:
        logger.warning("inference runs the eager network: the trace differs by %.2g", max(differences))
        return None
    return traced


def save_traced(network: Any, path: Path) -> None:
    """Write a trace to ``path`` (atomically, readable by this user only); a failure is only logged."""
    import os
    import tempfile

    import torch

    partial: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(handle)
        partial = Path(name)
        torch.jit.save(network, str(partial))  # type: ignore[no-untyped-call]
        partial.replace(path)
    except Exception as error:  # a cache: the next start traces again
        logger.warning("could not cache the traced network in %s: %s", path, error)
        if partial is not None:
            partial.unlink(missing_ok=True)


def _one_torch_thread() -> None:
    """Worker initializer: this thread runs torch single-threaded (the workers are the parallelism)."""
    import torch

    torch.get_num_threads()  # torch sets a new thread's count on first use: let that happen first
    torch.set_num_threads(1)


_team_lock = threading.Lock()
_team: Any = None


def _team_thread() -> Any:
    """The process's one thread for multi-threaded CPU inference (an executor of one thread).

    Why one: torch's OpenMP runtime (libgomp) gives every thread that runs a multi-threaded operator a
    team of worker threads that lives as long as that thread. Once the process's teams hold more
    threads than it has CPUs, libgomp cuts its workers' spin to almost nothing, so they sleep and are
    woken at every operator: each single-item prediction then costs context switches, and a served
    model (loaded and warmed on other threads than the event loop's) answers more slowly than the same
    model in process. One team thread for all callers keeps the teams within the CPUs.
    """
    global _team
    with _team_lock:
        if _team is None:
            from concurrent.futures import ThreadPoolExecutor

            _team = ThreadPoolExecutor(1, thread_name_prefix="tagops-torch-team")
        return _team


def _with_threads(threads: int, function: Callable[..., Any], *args: Any) -> Any:
    import torch

    torch.set_num_threads(threads)
    return function(*args)


def on_team(threads: int, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` with ``threads`` torch threads: on :func:`_team_thread` when more than one."""
    if threads < 2:
        return _with_threads(1, function, *args)  # one thread forms no team: the caller runs it
    return _team_thread().submit(_with_threads, threads, function, *args).result()


@contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Torch on one thread here for a while (no OpenMP team for this thread; see :func:`_team_thread`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class CpuInference:
    """The classifier on the CPU: traced when the trace is faithful, batches spread over workers.

    A batch of ``threads * 2`` rows or more is cut, sorted by length, into chunks that ``threads``
    single-threaded workers take in turn; a smaller batch runs with ``threads`` intra-op threads on the
    process's one thread for that (:func:`on_team`), as does tracing. Why: intra-op threads wait for
    each other at every operator, so one thread slowed by other work (a server's event loop, the load
    generator) stalls them all; independent workers lose only the slowed one's share
    (``benchmarks/serve.py`` measures batches served beside a busy event loop).
    """

    def __init__(
        self, module: Any, encoder: TextEncoder, threads: int, *, save_trace: Path | None = None
    ) -> None:
        import torch

        self.module = module
        self.threads = threads
        module.eval()  # a trace keeps the mode it was made in: never dropout
        if isinstance(module, torch.jit.ScriptModule):  # a trace already (loaded from the trace cache)
            self.network, self.traced = module, True
        else:
            self.network = on_team(threads, trace_classifier, module, encoder) or module
            self.traced = self.network is not module
            if self.traced and save_trace is not None:
                save_traced(self.network, save_trace)
        self._pool: Any = None

    def logits(self, arrays: dict[str, np.ndarray], order: np.ndarray) -> np.ndarray:
        """Logits (float32) for the rows of ``arrays``, in ``order``."""
        rows = len(order)
        if not self.traced:
            self.module.eval()  # as predict_logits does: whoever trained the module may have left dropout on
        if self.threads < 2 or rows < 2 * self.threads:
            parts = on_team(self.threads, self._in_order, arrays, order)
        else:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(
                    self.threads, thread_name_prefix="tagops-torch", initializer=_one_torch_thread
                )
            bounds = chunk_bounds(arrays["attention_mask"].sum(axis=1)[order], self.threads)
            chunks = [{k: v[order[a:b]] for k, v in arrays.items()} for a, b in bounds]
            parts = list(self._pool.map(lambda batch: _logits(self.network, batch), chunks))[::-1]
        return np.concatenate(parts)

    def _in_order(self, arrays: dict[str, np.ndarray], order: np.ndarray) -> list[np.ndarray]:
        return [_logits(self.network, b) for b in array_batches(arrays, PREDICT_BATCH_SIZE, order=order)]

    def close(self) -> None:
        """Stop the workers (they also stop when this object is collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
