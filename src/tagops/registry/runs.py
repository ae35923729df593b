"""MLflow runs written by id from other processes: Ray Train workers and Ray Tune trials.

Each function uses an MLflow client of its own, so it never touches (or needs) the calling process's
active run; the driver's :class:`~tagops.registry.client.Registry` opens and closes the parent run.
"""

from __future__ import annotations

from typing import Any


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dictionaries as one level of dotted names (``{"a": {"b": 1}}`` → ``{"a.b": 1}``)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def open_run(
    tracking_uri: str,
    experiment_id: str,
    run_name: str,
    *,
    tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
) -> str:
    """Create a run (a child of ``parent_run_id`` when given) and return its id; it stays RUNNING."""
    import mlflow

    run_tags = dict(tags or {})
    if parent_run_id:
        run_tags["mlflow.parentRunId"] = parent_run_id
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    return str(client.create_run(experiment_id, tags=run_tags, run_name=run_name).info.run_id)


def log_to_run(
    tracking_uri: str,
    run_id: str,
    *,
    metrics: dict[str, float] | None = None,
    params: dict[str, Any] | None = None,
    step: int | None = None,
) -> None:
    """Log metrics (at ``step``) and parameters into an existing run by id."""
    import time

    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, step or 0) for k, v in (metrics or {}).items()],
        params=[Param(k, str(v)[:6000]) for k, v in flatten(params or {}).items()],
    )


def close_run(tracking_uri: str, run_id: str, *, status: str = "FINISHED") -> None:
    """End a run created by :func:`open_run` (``FINISHED``, ``FAILED`` or ``KILLED``)."""
    import mlflow

    mlflow.MlflowClient(tracking_uri=tracking_uri).set_terminated(run_id, status=status)


def run_status(tracking_uri: str, run_id: str) -> str:
    """A run's status (``RUNNING``, ``FINISHED``, ``FAILED`` or ``KILLED``)."""
    import mlflow

    return str(mlflow.MlflowClient(tracking_uri=tracking_uri).get_run(run_id).info.status)
