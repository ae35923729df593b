"""Read which version an alias names without importing MLflow: the one registry read a server start needs.

Importing MLflow and opening its store takes seconds (``benchmarks/serve_defaults.py`` measures start-up),
longer than the rest of a uvicorn server's start from a warm model cache. An alias is read here straight
from where MLflow keeps it: its SQLite store (the embedded default, opened read-only) or a tracking
server's REST API (``GET /api/2.0/mlflow/registered-models/alias``, with MLflow's own credential
variables). Anything else, or any answer other than a version, returns ``None`` and the caller asks MLflow
itself (:class:`tagops.registry.client.Registry`), which also words the error for a missing alias.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger(__name__)

#: How long a tracking server has to answer the one read before MLflow's client is asked instead.
REST_TIMEOUT_S = 5.0


def alias_version(tracking_uri: str, name: str, alias: str) -> int | None:
    """The version ``name@alias`` names, or ``None`` when it cannot be read here (ask MLflow)."""
    try:
        if tracking_uri.startswith("sqlite:///"):
            return _from_sqlite(Path(tracking_uri.removeprefix("sqlite:///")), name, alias)
        if tracking_uri.startswith(("http://", "https://")):
            return _from_rest(tracking_uri.rstrip("/"), name, alias)
    except Exception as error:  # a store of another layout, a server not answering: MLflow decides
        logger.debug("reading %s@%s directly failed (%s); asking MLflow", name, alias, error)
    return None


def _from_sqlite(path: Path, name: str, alias: str) -> int | None:
    if not path.is_file():
        return None
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?", (name, alias)
        ).fetchall()
    return int(rows[0][0]) if len(rows) == 1 else None  # none, or one per workspace: MLflow decides


def _from_rest(base: str, name: str, alias: str) -> int | None:
    import httpx

    headers = {}
    auth = None
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    elif (user := os.environ.get("MLFLOW_TRACKING_USERNAME")) is not None:
        auth = httpx.BasicAuth(user, os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    verify: bool | str = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or (
        os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() != "true"
    )
    response = httpx.get(
        f"{base}/api/2.0/mlflow/registered-models/alias?name={quote(name)}&alias={quote(alias)}",
        headers=headers,
        auth=auth,
        verify=verify,
        timeout=REST_TIMEOUT_S,
    )
    if response.status_code != 200:
        return None
    return int(response.json()["model_version"]["version"])
