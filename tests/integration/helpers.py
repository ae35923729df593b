"""Helpers for integration tests: an isolated TAGOPS_HOME shared by a module, and the command line."""

from __future__ import annotations

import atexit
import csv
import functools
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tagops.settings import QUIET_ENVIRONMENT, Settings, prepare_environment
from tests.conftest import FOREIGN_SERVERS, restored_process_state

COLUMNS = ("id", "created_on", "title", "description", "tag")


@functools.cache
def _blank_mlflow_store() -> Path:
    """An embedded MLflow store with every schema migration applied and nothing in it, built once per process.

    MLflow creates a new SQLite store by running its whole migration history, several seconds of work that
    every fresh ``TAGOPS_HOME`` would otherwise repeat; a copy of this file is the same store, ready.
    """
    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="tagops-blank-mlflow-"))
    atexit.register(shutil.rmtree, folder, True)
    store = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{store}").search_experiments()
    return store


def seed_mlflow_store(settings: Settings) -> None:
    """Give ``settings``' embedded tracking store its schema now (a copy of the blank store)."""
    target = settings.mlflow_dir / "mlflow.db"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_blank_mlflow_store(), target)


@contextmanager
def isolated_home(home: Path, *, mirror: Path | None = None, seed_mlflow: bool = True) -> Iterator[Settings]:
    """Point every library's state at ``home`` for the duration (a module-scoped ``tagops_home``).

    The quiet environment is set through the monkeypatch (not by ``prepare_environment``'s ``setdefault``)
    so that nothing leaks into later tests once the context closes. ``seed_mlflow`` starts the embedded
    tracking store from the blank one (:func:`seed_mlflow_store`); turn it off to check that a command left
    the embedded store alone.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGOPS_HOME", str(home))
        mp.setenv("ZENML_CONFIG_PATH", str(home / "zenml"))
        for key, value in QUIET_ENVIRONMENT.items():
            mp.setenv(key, value)
        for key in FOREIGN_SERVERS:
            mp.delenv(key, raising=False)
        if mirror is None:
            mp.delenv("TAGOPS_DATA_MIRROR", raising=False)
        else:
            mp.setenv("TAGOPS_DATA_MIRROR", str(mirror))
        settings = Settings()
        assert settings.home == home.resolve()
        prepare_environment(settings)
        if seed_mlflow:
            seed_mlflow_store(settings)
        yield settings


@dataclass(frozen=True)
class CliResult:
    """What one `tagops` invocation returned."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The one-line error messages `tagops` prints (logging lines are not counted)."""
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]

    def explain(self) -> str:
        """Everything useful for an assertion message."""
        return (
            f"tagops {' '.join(self.args)} -> exit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-3000:]}"
        )


def run_cli(
    *args: str | Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    cwd: Path | None = None,
    fresh_process: bool = False,
) -> CliResult:
    """Run ``tagops ARGS`` in the current (isolated) environment and return what it printed and its exit code.

    By default the command runs in this process, through the same entry point as the console script
    (:func:`tagops.cli.main`), with the process state it changes put back afterwards
    (:func:`_cli_process_state`): a fresh interpreter would spend most of a short command importing MLflow,
    ZenML and torch again. ``fresh_process`` runs it in a new interpreter instead, as a user's terminal
    does, for tests whose subject is the process (concurrent commands, signals, what a new interpreter
    prints); ``timeout`` applies there only.
    """
    argv = tuple(str(a) for a in args)
    environment = {"COLUMNS": "200", **(env or {})}
    if not fresh_process:
        return _run_in_process(argv, environment, cwd)
    proc = subprocess.run(
        [sys.executable, "-m", "tagops.cli", *argv],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


ROOT = Path(__file__).resolve().parents[2]


def run_make(
    target: str, *, env: dict[str, str] | None = None, timeout: float = 900, **variables: str | Path
) -> CliResult:
    """Run ``make TARGET NAME=VALUE...`` in the repository, as a workflow step or a user runs it.

    The workflows in .github/workflows call these targets; tests call them through here, so that a
    workflow step is a command the suite runs (tests/unit/test_workflows.py checks that each is).
    """
    argv = (
        "make",
        "--no-print-directory",
        "-C",
        str(ROOT),
        target,
        *(f"{k}={v}" for k, v in variables.items()),
    )
    proc = subprocess.run(
        argv,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(argv[3:], proc.returncode, proc.stdout, proc.stderr)


#: One in-process command at a time: the standard streams, the environment and the working folder are the
#: process's own.
_IN_PROCESS = threading.Lock()


def _run_in_process(argv: tuple[str, ...], env: dict[str, str], cwd: Path | None) -> CliResult:
    from tagops.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _IN_PROCESS, _cli_process_state(argv, env, cwd), redirect_stdout(out), redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = _exit_status(exit_.code, err)
        except BaseException:  # what the interpreter does with an exception nobody caught
            traceback.print_exc(file=err)
            code = 1
    return CliResult(argv, code, out.getvalue(), err.getvalue())


def _exit_status(code: object, err: io.StringIO) -> int:
    """The status ``sys.exit(code)`` gives a process (a message is printed and counts as 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=err)
    return 1


@contextmanager
def _cli_process_state(argv: tuple[str, ...], env: dict[str, str], cwd: Path | None) -> Iterator[None]:
    """Give a command the process a console script would, and undo afterwards what the command changed.

    The command line, the working folder, the environment and logging (``restored_process_state``:
    ``prepare_environment`` sets library variables, ``tagops.cli.logs`` adds a console and a file handler),
    an MLflow run left open, and ZenML's process-wide configuration and client (read from
    ``ZENML_CONFIG_PATH`` once).
    """
    old_argv, old_cwd = sys.argv, Path.cwd()
    with restored_process_state():
        os.environ.update(env)
        sys.argv = ["tagops", *argv]
        if cwd is not None:
            os.chdir(cwd)
        _reset_zenml()
        try:
            yield
        finally:
            _end_mlflow_run()
            _reset_zenml()
            os.chdir(old_cwd)
            sys.argv = old_argv


def _reset_zenml() -> None:
    """Make ZenML read its configuration again from the current ``ZENML_CONFIG_PATH`` (if it is imported)."""
    if "zenml.client" not in sys.modules:
        return
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration

    GlobalConfiguration._reset_instance()
    Client._reset_instance()


def _end_mlflow_run() -> None:
    """End an MLflow run a command left active, as MLflow does when a process exits."""
    if "mlflow" not in sys.modules:
        return
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()


def registry_counts(settings: Settings) -> dict[str, int]:
    """Rows in the embedded MLflow store's registry and run tables (read with sqlite3, no mlflow import)."""
    db = settings.mlflow_dir / "mlflow.db"
    if not db.is_file():
        return {"registered_models": 0, "model_versions": 0, "runs": 0}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return {
            table: int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
            for table in ("registered_models", "model_versions", "runs")
        }


def read_rows(path: Path) -> list[dict[str, str]]:
    """The data rows of a projects CSV, exactly as text."""
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] = COLUMNS) -> None:
    """Write projects rows back as CSV (quoted where needed, so multi-line descriptions survive)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows([{c: row[c] for c in columns} for row in rows])


@contextmanager
def serving(config: Path) -> Iterator[str]:
    """`tagops serve --port 0 --config CONFIG` in a process of its own (this environment); yields its URL.

    Stopped with SIGTERM afterwards.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "tagops.cli", "serve", "--port", "0", "--config", str(config)],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server prints its URL (or exits)
        assert line.startswith("serving "), line
        yield line.split(" at ")[1].split(" ")[0]
    finally:
        proc.terminate()
        proc.wait(30)


def predict_frame(http: Any, frame: Any, *, per_request: int = 8) -> list[str]:
    """POST ``frame``'s titles and descriptions to /v1/predict with ``http`` (an httpx client), a few
    items a request; the prediction ids in order."""
    ids: list[str] = []
    for start in range(0, len(frame), per_request):
        chunk = frame.iloc[start : start + per_request]
        items = [
            {"title": t, "description": d} for t, d in zip(chunk["title"], chunk["description"], strict=True)
        ]
        answer = http.post("/v1/predict", json={"items": items})
        assert answer.status_code == 200, answer.text
        ids += [p["prediction_id"] for p in answer.json()["predictions"]]
    return ids


def log_labelled_rows(
    settings: Settings, version: int, frame: Any, start: datetime, *, key_id: str | None = None
) -> int:
    """Log ``frame``'s projects as answered by registry ``version`` from ``start`` on, one a second, each
    labelled with its ``tag`` by ``key_id`` (default: a new labeller key, so the labels are trusted); the
    rows written."""
    from tagops.inference.loading import load_predictor
    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog
    from tagops.serving.keys import KeyStore
    from tagops.serving.state import ServingState

    predictor = load_predictor(f"models:/tagops/{version}", settings, threshold=0.5)
    results = predictor.predict(frame["title"].tolist(), frame["description"].tolist())
    rows = [
        {
            "id": uuid.uuid4().hex,
            "created_at": start + timedelta(seconds=i),
            "request_id": None,
            "model_name": "tagops",
            "model_version": version,
            "model_uri": "models:/tagops@champion",
            "title": title,
            "description": description,
            "tag": result["tag"],
            "confidence": result["confidence"],
            "abstained": result["abstained"],
            "probabilities": result["probabilities"],
            "latency_ms": 1.0,
            "replica": "test",
        }
        for i, (title, description, result) in enumerate(
            zip(frame["title"], frame["description"], results, strict=True)
        )
    ]
    store = PredictionLog(default_database_url(settings))
    if key_id is None:
        ServingState(store.engine).create_tables()
        key_id = KeyStore(store.engine).create("labelling team", "labeller")[0].key_id
    store.writer.start()
    assert store.writer.submit(rows) and store.writer.flush()
    for row, truth in zip(rows, frame["tag"], strict=True):
        store.add_feedback(prediction_id=row["id"], tag=truth, key_id=key_id)
    store.writer.stop()
    store.dispose()
    return len(rows)


def train_linear_champion(settings: Settings, fixture_dir: Path, registry: Any = None, **params: Any) -> int:
    """Train a linear model (``params``) on the fixtures, register it and make it ``champion``; its version.

    The promotion goes through the gate with its behavioural cases off (the 80 fixture rows do not teach
    them), so the promotion history starts with an ``initial`` record as a real first champion's does.
    """
    from tagops.config import DataConfig, GateConfig, LinearParams, TrainConfig
    from tagops.data.stages import pull_stage, validate_stage
    from tagops.registry.client import Registry
    from tagops.workloads.promote import promote
    from tagops.workloads.train import run_training

    registry = registry or Registry(settings)
    cfg = TrainConfig(data=DataConfig(source_dir=fixture_dir), model=LinearParams(**params))
    trained = run_training(cfg, settings, registry=registry)
    assert trained.version is not None
    _, holdout = validate_stage(pull_stage(settings, cfg.data))
    decision = promote(
        registry,
        holdout=holdout,
        eval_cfg=cfg.evaluation,
        gate=GateConfig(behaviour=()),
        history=settings.promotion_history,
        version=trained.version,
        trigger="initial",
    )
    assert decision.promote, decision.reason
    return int(trained.version)
