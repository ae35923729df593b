"""Training from warehouse snapshots, through the command line: reproducible by snapshot id.

The four raw sources are written from the synthetic fixtures (projects.csv and tags.csv are dataset.csv
split by position). The pipeline builds the warehouse and trains a linear model on the snapshot it
makes; MLflow and ZenML record the snapshot's id. Then the sources move on (one row relabelled, one
added) and a new snapshot is built; training again from the first snapshot's id gives the registered
model again, byte for byte (the registry finds its content hash), with the same metrics.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.integration.helpers import isolated_home, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT_COLUMNS = ["id", "created_on", "title", "description"]


@dataclass
class Env:
    settings: Any
    sources: Path
    config: Path


def write_sources(folder: Path, dataset: pd.DataFrame) -> None:
    """dataset.csv, and projects.csv + tags.csv that join back into it by position."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset.to_csv(folder / "dataset.csv", index=False)
    dataset[PROJECT_COLUMNS].to_csv(folder / "projects.csv", index=False)
    dataset[["tag"]].to_csv(folder / "tags.csv", index=False)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("snapshots")
    sources = root / "sources"
    write_sources(sources, pd.read_csv(fixture_dir / "dataset.csv", dtype=str))
    shutil.copyfile(fixture_dir / "holdout.csv", sources / "holdout.csv")
    config = root / "pipeline.yaml"
    config.write_text(
        f"data: {{source_dir: {sources}, snapshot: build, snapshot_feedback: false}}\n"
        "models: [{family: linear}]\n"
        "evaluation: {bootstrap_samples: 200}\n"
        # The 80 synthetic rows do not teach the behavioural cases; the data's provenance is the subject.
        "gate: {behaviour: []}\n",
        encoding="utf-8",
    )
    with isolated_home(root / "home") as settings:
        yield Env(settings, sources, config)


def _train(env: Env, *args: str) -> str:
    """`tagops pipeline train` with the module's config; the snapshot id it reports."""
    result = run_cli("pipeline", "train", "--config", env.config, *args)
    assert result.returncode == 0, result.explain()
    found = re.search(r"data: warehouse snapshot ([0-9a-f]+)", result.stdout)
    assert found, result.explain()
    return found.group(1)


def _runs_of(env: Env, snapshot_id: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(env.settings.tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.snapshot_id = '{snapshot_id}'")


def _metrics(run: Any) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if k.startswith(("holdout.", "val."))}


def test_a_model_trained_from_a_snapshot_is_reproduced_from_its_id(env: Env) -> None:
    from tagops.registry.client import MODEL_SHA_TAG, Registry

    registry = Registry(env.settings)
    first = _train(env, "--no-pipeline")
    (version,) = registry.list_versions()
    registered = registry.client.get_model_version(registry.name, str(version["version"]))
    assert registered.tags["snapshot_id"] == first
    (run,) = _runs_of(env, first)
    assert run.data.params["snapshot_id"] == first
    logged = registry.client.download_artifacts(run.info.run_id, "data/lineage.json", str(env.config.parent))
    assert json.loads(Path(logged).read_text(encoding="utf-8"))["snapshot_id"] == first

    # The sources move on: a relabelled row and a new one make another snapshot.
    dataset = pd.read_csv(env.sources / "dataset.csv", dtype=str)
    dataset.loc[0, "tag"] = "mlops" if dataset.loc[0, "tag"] != "mlops" else "other"
    extra = dataset.iloc[[1]].assign(id="9001", title="Feature store for streaming pipelines")
    write_sources(env.sources, pd.concat([dataset, extra], ignore_index=True))
    built = run_cli("data", "build", "--source-dir", env.sources, "--no-feedback", "--json")
    assert built.returncode == 0, built.explain()
    moved = _train(env, "--no-pipeline", "--snapshot", "latest")
    assert moved != first
    diff = run_cli("data", "diff", first, moved, "--json")
    assert '"relabelled": 1' in diff.stdout and '"added": 1' in diff.stdout, diff.explain()
    assert len(registry.list_versions()) == 2  # new data, a new model

    # The first snapshot again: the same bytes as the registered model (the registry finds its hash, so
    # no version is added) and the same metrics.
    again = _train(env, "--no-pipeline", "--snapshot", first[:10])
    assert again == first
    assert len(registry.list_versions()) == 2
    assert registry.find_version(MODEL_SHA_TAG, registered.tags[MODEL_SHA_TAG]) == version["version"]
    runs = _runs_of(env, first)
    assert len(runs) == 2
    assert _metrics(runs[0]) == _metrics(runs[1]) and _metrics(runs[0])


def test_the_zenml_run_records_the_snapshot_it_trained_on(env: Env) -> None:
    from zenml.client import Client

    snapshot_id = _train(env, "--snapshot", "latest")
    (run,) = Client().list_pipeline_runs(sort_by="desc:created", size=1)
    assert run.run_metadata["snapshot_id"] == snapshot_id
    data = run.steps["pull_step"].outputs["data_snapshot"][0].load()
    assert data["snapshot_id"] == snapshot_id
    assert Path(data["dataset_path"]).parent.name == snapshot_id


def test_retraining_trains_on_a_snapshot_built_with_the_trusted_feedback(env: Env) -> None:
    from datetime import UTC, datetime, timedelta

    from tagops.config import DataConfig, RetrainConfig, TrainConfig
    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog
    from tagops.registry.client import CHAMPION, Registry
    from tagops.serving.keys import KeyStore
    from tagops.serving.state import ServingState
    from tagops.simulation.traffic import shifted_frame
    from tagops.warehouse.snapshots import read_lineage, resolve_snapshot
    from tagops.workloads.retrain import feedback_stage
    from tests.integration.helpers import log_labelled_rows

    registry = Registry(env.settings)
    if registry.alias_version(CHAMPION) is None:
        _train(env, "--no-pipeline")
    champion = registry.alias_version(CHAMPION)
    assert champion is not None
    store = PredictionLog(default_database_url(env.settings))
    ServingState(store.engine).create_tables()
    labeller, _ = KeyStore(store.engine).create("labelling team", "labeller")
    store.dispose()
    dataset = pd.read_csv(env.sources / "dataset.csv", dtype=str, keep_default_na=False)
    start = datetime.now(UTC) - timedelta(hours=1)
    sent = log_labelled_rows(env.settings, champion, shifted_frame(dataset), start, key_id=labeller.key_id)

    # The same feedback rows, by the same rules, whether read from the files or from a snapshot.
    files = RetrainConfig(train=TrainConfig(data=DataConfig(source_dir=env.sources)))
    snapshot = RetrainConfig(train=TrainConfig(data=DataConfig(source_dir=env.sources, snapshot="build")))
    _, _, _, from_files, recent_files, _ = feedback_stage(env.settings, files)
    data, _, _, from_snapshot, recent_snapshot, counts = feedback_stage(env.settings, snapshot)
    assert 0 < len(from_snapshot) < sent and counts["train"] == len(from_snapshot)
    assert sorted(from_snapshot["title"]) == sorted(from_files["title"])
    assert sorted(recent_snapshot["title"]) == sorted(recent_files["title"])
    lineage = read_lineage(resolve_snapshot(env.settings, str(data.snapshot_id)))
    assert lineage.feedback.training_rows == len(from_snapshot)

    config = env.config.with_name("retrain.yaml")
    config.write_text(
        f"retrain:\n  train:\n    data: {{source_dir: {env.sources}, snapshot: build}}\n"
        "    model: {family: linear}\n  gate: {behaviour: []}\n",
        encoding="utf-8",
    )
    result = run_cli("retrain", "--no-pipeline", "--no-promote", "--config", config)
    assert result.returncode == 0, result.explain()
    challenger = json.loads(result.stdout)["challenger_version"]
    tags = registry.client.get_model_version(registry.name, str(challenger)).tags
    assert tags["snapshot_id"] == data.snapshot_id
