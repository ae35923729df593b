"""Batch prediction: read a file of items, predict them in this process or on Ray Data, write the results.

``tagops predict --input items.csv --output predictions.jsonl [--engine auto|local|ray]``; ``auto`` (the
default) uses Ray for a transformer, alone or in an ensemble, over files of at least
:data:`AUTO_RAY_ROWS` rows. The input is read
and validated once (every bad row named). On Ray it is split into blocks and sent through ``map_batches``
over an actor pool: each actor loads the model once and predicts whole batches with the same
``Predictor``. The output file is byte-for-byte the same whichever engine predicts.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.workloads.stages import Stage, run_stages

if TYPE_CHECKING:
    import pandas as pd

    from tagops.inference.predictor import Predictor
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

#: ``--engine auto`` uses Ray from this many rows on; below it, starting Ray costs more than it saves.
AUTO_RAY_ROWS = 20_000
#: Rows per model call inside an actor.
DEFAULT_BATCH_ROWS = 512

#: Called as rows are predicted: rows predicted so far, rows in all (e.g. a progress bar).
OnProgress = Callable[[int, int], None]


class PredictBatches:
    """Ray Data ``map_batches`` callable: loads the model once per actor, predicts pandas batches."""

    def __init__(self, model_dir: str, threshold: float | None, num_threads: int) -> None:
        from tagops.inference.predictor import Predictor

        self.predictor = Predictor.from_directory(Path(model_dir), threshold=threshold)
        if hasattr(self.predictor.model, "num_threads"):
            self.predictor.model.num_threads = num_threads
        else:
            import os

            os.environ["OMP_NUM_THREADS"] = str(num_threads)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        """``row``, ``title``, ``description`` in; ``row`` and the prediction as JSON text out."""
        import pandas as pd

        started = time.time()
        results = self.predictor.predict(batch["title"].tolist(), batch["description"].tolist())
        return pd.DataFrame(
            {
                "row": batch["row"].to_numpy(),
                "result": [json.dumps(r) for r in results],
                "started": started,
                "finished": time.time(),
            }
        )


def predict_items(
    model_dir: Path,
    items: list[dict[str, Any]],
    settings: Settings,
    *,
    threshold: float | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
    actors: int | None = None,
    cpus_per_actor: int = 1,
    stats: dict[str, Any] | None = None,
    on_progress: OnProgress | None = None,
) -> list[dict[str, Any]]:
    """Predictions for ``items`` (dicts with ``title`` and optional ``description``), in input order.

    The pool defaults to one actor per ``cpus_per_actor`` CPUs of the cluster; each runs torch with that
    many threads. Rows travel sorted by text length, so each batch pads little (as the in-process path
    sorts a whole call's texts); the results come back in input order. ``stats``, when given, receives
    the pool size and when the first batch started and the last finished (steady-state throughput).
    ``on_progress(done, total)`` is called in this process as the actors' blocks arrive.
    Uses :func:`tagops.runtime.ray_session` (embedded cluster, or ``RAY_ADDRESS``).
    """
    import pandas as pd

    from tagops.runtime import ray_session

    if not items:
        return []
    frame = pd.DataFrame(
        {
            "row": range(len(items)),
            "title": [str(i["title"]) for i in items],
            "description": [str(i.get("description") or "") for i in items],
        }
    )
    lengths = frame["title"].str.len() + frame["description"].str.len()
    frame = frame.iloc[lengths.argsort(kind="stable")]
    with ray_session(settings) as resources:
        import ray.data
        from ray.data import ActorPoolStrategy, DataContext

        DataContext.get_current().print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        pool = actors or max(1, math.floor(float(resources.get("CPU", 1.0)) / cpus_per_actor))
        # Blocks of a few batches each, so that every actor gets work from the start.
        blocks = max(pool, math.ceil(len(frame) / (batch_size * 4)))
        chunk = math.ceil(len(frame) / blocks)
        dataset = ray.data.from_pandas([frame.iloc[i : i + chunk] for i in range(0, len(frame), chunk)])
        mapped = dataset.map_batches(
            PredictBatches,
            fn_constructor_kwargs={
                "model_dir": str(model_dir),
                "threshold": threshold,
                "num_threads": cpus_per_actor,
            },
            compute=ActorPoolStrategy(size=pool),
            num_cpus=cpus_per_actor,
            batch_size=batch_size,
            batch_format="pandas",
        )
        # Block by block as the actors finish them (what to_pandas() gathers), so progress can be told.
        blocks_done, done = [], 0
        for block in mapped.iter_batches(batch_size=None, batch_format="pandas"):
            blocks_done.append(block)
            done += len(block)
            if on_progress is not None:
                on_progress(done, len(frame))
        predicted = pd.concat(blocks_done, ignore_index=True)
    logger.info("Ray Data predicted %d rows with %d actor(s)", len(predicted), pool)
    if stats is not None:
        stats.update(
            actors=pool,
            rows=len(predicted),
            first_batch_started=float(predicted["started"].min()),
            last_batch_finished=float(predicted["finished"].max()),
        )
    ordered = predicted.sort_values("row")["result"].tolist()
    return [json.loads(result) for result in ordered]


def runs_a_network(model: Any) -> bool:
    """Whether predicting with ``model`` runs a transformer network: itself, or a member of its ensemble."""
    if model.family == "ensemble":
        return any(runs_a_network(member) for member in getattr(model, "members_", ()))
    return bool(model.family == "transformer")


def choose_engine(engine: str, predictor: Predictor, input_path: Path) -> str:
    """``local`` or ``ray``: ``auto`` picks Ray for a network (alone or in an ensemble) over many rows.

    The row count is estimated from line breaks (a quoted CSV field may span lines), which is all a
    threshold needs; the in-process path is faster for the other families at any size.
    """
    if engine != "auto":
        return engine
    if not runs_a_network(predictor.model) or not input_path.is_file():
        return "local"
    with input_path.open("rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return "ray" if lines >= AUTO_RAY_ROWS else "local"


def predict_stage(
    settings: Settings,
    predictor: Predictor,
    items: list[dict[str, Any]],
    engine: str,
    batch_size: int = DEFAULT_BATCH_ROWS,
    actors: int | None = None,
    cpus_per_actor: int = 1,
    stats: dict[str, Any] | None = None,
    on_progress: OnProgress | None = None,
) -> list[dict[str, Any]]:
    """Predict the items in this process (``local``) or on a Ray Data actor pool (``ray``).

    ``on_progress(done, total)`` is called after each batch of rows (``local``) or block (``ray``).
    """
    from tagops.inference.predictor import predict_in_batches

    if engine == "local":
        if on_progress is None:
            return predict_in_batches(predictor, items, batch_size=batch_size)
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), batch_size):  # the same batches, one call each
            batch = items[start : start + batch_size]
            results.extend(predict_in_batches(predictor, batch, batch_size=batch_size))
            on_progress(len(results), len(items))
        return results
    model_dir = predictor.metadata.get("path")
    if not model_dir:
        raise ValueError("batch inference on Ray needs a predictor loaded from a model folder")
    return predict_items(
        Path(model_dir),
        items,
        settings,
        threshold=predictor.threshold,
        batch_size=batch_size,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        stats=stats,
        on_progress=on_progress,
    )


def batch_plan(
    input_path: Path,
    output_path: Path,
    *,
    engine: str = "auto",
    batch_size: int = DEFAULT_BATCH_ROWS,
    actors: int | None = None,
    cpus_per_actor: int = 1,
    stats: dict[str, Any] | None = None,
    on_progress: OnProgress | None = None,
) -> list[Stage]:
    """The batch prediction workload over a loaded ``predictor``: read, choose the engine, predict, write."""
    from tagops.inference.predictor import read_items, write_predictions

    return [
        Stage("read_step", read_items, params={"path": input_path}, outputs=("items",)),
        Stage(
            "engine_step",
            choose_engine,
            inputs={"predictor": "predictor"},
            params={"engine": engine, "input_path": input_path},
            outputs=("engine",),
        ),
        Stage(
            "predict_step",
            predict_stage,
            inputs={"predictor": "predictor", "items": "items", "engine": "engine"},
            params={
                "batch_size": batch_size,
                "actors": actors,
                "cpus_per_actor": cpus_per_actor,
                "stats": stats,
                "on_progress": on_progress,
            },
            outputs=("results",),
        ),
        Stage(
            "write_step",
            write_predictions,
            inputs={"items": "items", "results": "results"},
            params={"output_path": output_path},
            outputs=("rows",),
        ),
    ]


def predict_file(
    predictor: Predictor,
    input_path: Path,
    output_path: Path,
    settings: Settings,
    *,
    engine: str = "ray",
    batch_size: int = DEFAULT_BATCH_ROWS,
    actors: int | None = None,
    cpus_per_actor: int = 1,
    stats: dict[str, Any] | None = None,
    on_progress: OnProgress | None = None,
) -> int:
    """Predict every row of ``input_path`` into ``output_path`` with :func:`batch_plan`; returns rows written.

    ``engine``: ``ray`` (Ray Data actor pool), ``local`` (this process) or ``auto`` (:func:`choose_engine`).
    The output file is the same whichever engine predicts. ``on_progress(done, total)``, when given, is
    called in this process as rows are predicted (a progress bar).
    """
    from tagops.inference.predictor import check_output

    check_output(output_path)  # before any row is predicted, not after
    plan = batch_plan(
        input_path,
        output_path,
        engine=engine,
        batch_size=batch_size,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        stats=stats,
        on_progress=on_progress,
    )
    rows: int = run_stages(plan, settings, results={"predictor": predictor})["rows"]
    return rows
