"""The service the simulation runs against: its process, its environment and its prediction-log rows."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tagops.errors import TagopsError
from tagops.model_ref import CHALLENGER, DEFAULT_MODEL, DEFAULT_MODEL_URI, ModelRef

if TYPE_CHECKING:
    from tagops.config import SimulateConfig
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


#: Environment variables a process of the simulation gets pointed at the simulation's own state.
_ISOLATED = (
    "TAGOPS_HOME",
    "ZENML_CONFIG_PATH",
    "MLFLOW_TRACKING_URI",
    "TAGOPS_MLFLOW_TRACKING_URI",
    "TAGOPS_SERVE_DATABASE_URL",
    "TAGOPS_RETRAIN_SERVICE_URL",
    "TAGOPS_RETRAIN_ADMIN_KEY",
)


@contextlib.contextmanager
def running_service(
    settings: Settings, cfg: SimulateConfig, config_path: Path, env: dict[str, str]
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``tagops serve`` in a child process; yields its URL; SIGTERM (the log is flushed) on the way out."""
    from tagops.serving.server import bind_socket

    port = cfg.port
    if cfg.engine == "ray" and port == 0:  # Ray Serve needs a port chosen up front
        probe = bind_socket("127.0.0.1", 0)
        port = probe.getsockname()[1]
        probe.close()
    command = [
        *(sys.executable, "-m", "tagops.cli", "serve", "--engine", cfg.engine),
        *("--port", str(port), "--config", str(config_path)),
    ]
    log_path = settings.home / "service.log"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the server prints its URL once it answers (or exits)
            if not line.startswith("serving "):
                raise TagopsError(f"the service did not start; see {log_path}")
            url = line.split(" at ")[1].split(" ")[0]
            logger.info("simulate: service at %s (log: %s)", url, log_path)
            yield url, proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(30)


def wait_for_rows(settings: Settings, table_name: str, expected: int, *, timeout_s: float = 60.0) -> int:
    """Poll until ``table_name`` holds ``expected`` rows (or the timeout); returns the count."""
    from tagops.predlog import schema
    from tagops.predlog.log import PredictionLog

    table = {
        "predictions": schema.predictions,
        "feedback": schema.feedback,
        "shadow": schema.shadow_predictions,
    }[table_name]
    deadline = time.monotonic() + timeout_s
    with PredictionLog.from_config(None, settings) as log:
        while True:
            count = log.reader.count_rows(table)
            if count >= expected or time.monotonic() > deadline:
                return count
            time.sleep(0.1)


def service_environment(settings: Settings, url: str | None = None, key: str | None = None) -> dict[str, str]:
    """The environment of the service process: the simulation's state folder and a quiet, local set-up."""
    from tagops.settings import QUIET_ENVIRONMENT

    env = {k: v for k, v in os.environ.items() if k not in _ISOLATED}
    env.update(QUIET_ENVIRONMENT)
    env.update({"TAGOPS_HOME": str(settings.home), "ZENML_CONFIG_PATH": str(settings.zenml_dir)})
    if url:
        env["TAGOPS_RETRAIN_SERVICE_URL"] = url
    if key:
        env["TAGOPS_RETRAIN_ADMIN_KEY"] = key
    return env


def write_serve_config(path: Path, cfg: SimulateConfig) -> Path:
    """The service's config: champion served, challenger shadowed, a short log flush for quick windows."""
    import yaml

    config = {
        "model_uri": DEFAULT_MODEL_URI,
        "shadow_model_uri": str(ModelRef(name=DEFAULT_MODEL.name, alias=CHALLENGER)),
        "engine": cfg.engine,
        "host": "127.0.0.1",
        "num_cpus": 1.0,
        "log_flush_interval_s": 0.05,
        "sync_interval_s": 0.5,
        "key_cache_ttl_s": 60.0,
        # The simulated labelling team replays hours of labels in seconds: no rate limit on its key
        # (the disagreeing users' client key keeps the default limits).
        "feedback_limits": {"labeller": {}},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
