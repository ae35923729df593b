"""`tagops monitor` end to end: a registered model's reference, a SQLite prediction log, ZenML, MLflow.

Trains the linear family on the synthetic fixtures (registration records ``reference_stats.json`` with
MiniLM embeddings), fills the prediction log through ``PredictionLog`` with one in-distribution window and
one shifted window, runs the monitor on both (the ZenML pipeline through the CLI, and in-process), and
checks the JSON summary, the HTML report, the MLflow metrics and the webhook alert on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tagops.config import DataConfig, LinearParams, MonitorConfig, TrainConfig
from tests.integration.helpers import isolated_home, log_labelled_rows, run_cli
from tests.unit.test_monitor_outputs import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T_IN = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
T_SHIFT = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NEW_WORDS = "quantum photonic genome protein seismic ledger qubit lidar"


@dataclass
class Env:
    settings: Any
    version: int
    root: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[Env]:
    from tagops.registry.client import Registry
    from tagops.workloads.train import run_training

    root = tmp_path_factory.mktemp("monitor")
    with isolated_home(root / "home") as settings:
        cfg = TrainConfig(data=DataConfig(source_dir=fixture_dir), model=LinearParams())
        result = run_training(cfg, settings, registry=Registry(settings))
        assert result.version is not None
        holdout = pd.read_csv(fixture_dir / "holdout.csv", dtype=str, keep_default_na=False)
        in_distribution = pd.concat([holdout] * 4, ignore_index=True)  # 96 rows, the reference's mix
        shifted = in_distribution.copy()
        shifted["title"] = [f"{NEW_WORDS} {i}" for i in range(len(shifted))]
        shifted["description"] = ""
        log_labelled_rows(settings, result.version, in_distribution, T_IN)
        log_labelled_rows(settings, result.version, shifted, T_SHIFT)
        yield Env(settings, result.version, root)


def test_registration_stores_reference_stats(env: Env) -> None:
    from tagops.registry.client import Registry
    from tagops.workloads.monitor import load_reference_stats

    registry = Registry(env.settings)
    info = registry.version_info(env.version)
    assert info["tags"]["reference_stats"] == "reference_stats.json"
    reference, version = load_reference_stats(f"models:/tagops/{env.version}", env.settings)
    assert version == env.version
    assert reference["num_rows"] == 24 and reference["embedding"]["embedder"] == "minilm"
    assert len(reference["embedding"]["sample"][0]) == 384
    assert reference["holdout_f1"] == pytest.approx(float(info["tags"]["holdout_f1"]), abs=1e-4)


def _metrics(settings: Any, run_id: str) -> dict[str, float]:
    import mlflow

    return dict(mlflow.MlflowClient(tracking_uri=settings.tracking_uri).get_run(run_id).data.metrics)


def test_shifted_window_alarms_through_the_cli_pipeline(env: Env) -> None:
    output = env.root / "shifted"
    with Receiver() as receiver:
        config = env.root / "monitor.yaml"
        config.write_text(
            f"min_window_rows: 20\nmin_feedback_rows: 20\npermutations: 1000\nwebhook_url: {receiver.url}\n",
            encoding="utf-8",
        )
        result = run_cli(
            "monitor",
            "--since",
            T_SHIFT.isoformat(),
            "--until",
            (T_SHIFT + timedelta(hours=1)).isoformat(),
            "--model",
            f"models:/tagops/{env.version}",
            "--output",
            output,
            "--config",
            config,
            timeout=600,
        )
    assert result.returncode == 0, result.explain()
    printed = json.loads(result.stdout)
    assert printed["alarm"] is True and printed["num_rows"] == 96
    assert {"token_count", "oov", "embedding"} <= set(printed["drifted"])
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["model_version"] == env.version and summary["drift_alarm"] is True
    assert "ALARM" in (output / "report.html").read_text(encoding="utf-8")
    assert len(receiver.bodies) == 1 and receiver.bodies[0]["drifted"] == summary["drifted"]
    metrics = _metrics(env.settings, printed["mlflow_run_id"])
    assert metrics["alarm"] == 1.0 and metrics["num_rows"] == 96.0
    assert metrics["oov.p_adjusted"] < 0.01 and metrics["token_count.p_value"] < 0.01


def test_in_distribution_window_does_not_alarm(env: Env) -> None:
    from tagops.workloads.monitor import run_monitor

    cfg = MonitorConfig(
        model_uri=f"models:/tagops/{env.version}", min_window_rows=20, min_feedback_rows=20, permutations=1000
    )
    result = run_monitor(
        cfg, env.settings, since=T_IN, until=T_IN + timedelta(hours=1), output_dir=env.root / "in"
    )
    summary = result.summary
    assert summary["num_rows"] == 96 and summary["alarm"] is False, summary["tests"]
    assert summary["performance"]["feedback_rows"] == 96 and summary["performance"]["f1"] is not None
    assert result.run_id is not None
    metrics = _metrics(env.settings, result.run_id)
    assert metrics["alarm"] == 0.0 and metrics["feedback_rows"] == 96.0
    assert (env.root / "in" / "report.html").is_file()


@pytest.mark.parametrize(("start", "status"), [(T_SHIFT, 3), (T_IN, 0)])
def test_fail_on_alarm_sets_the_exit_status(env: Env, start: datetime, status: int) -> None:
    config = env.root / "monitor-exit.yaml"
    config.write_text("min_window_rows: 20\nmin_feedback_rows: 20\npermutations: 500\n", encoding="utf-8")
    result = run_cli(
        "monitor",
        "--no-pipeline",
        "--fail-on-alarm",
        "--since",
        start.isoformat(),
        "--until",
        (start + timedelta(hours=1)).isoformat(),
        "--model",
        f"models:/tagops/{env.version}",
        "--output",
        env.root / f"exit-{status}",
        "--config",
        config,
        timeout=600,
    )
    assert result.returncode == status, result.explain()
    assert json.loads(result.stdout)["alarm"] is (status == 3)
