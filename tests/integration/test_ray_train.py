"""Ray Train end to end on a tiny random BERT and the synthetic fixtures (embedded Ray, about 2 minutes).

Two DDP workers train with Ray Data preprocessing; the test checks the registered model, the per-epoch
metrics in MLflow, the checkpoints Ray kept, the run record, and that the model loads without Ray.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tagops.config import DataConfig, EvalConfig, TrainConfig, TransformerParams
from tests.integration.helpers import isolated_home
from tests.tiny_encoder import fixture_words, write_tiny_encoder

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_WORDS = fixture_words(FIXTURES / "dataset.csv", FIXTURES / "holdout.csv")


def tiny_config(encoder: Path, **model: Any) -> TrainConfig:
    """A transformer run that takes seconds per epoch on the fixtures."""
    params = {
        "encoder": str(encoder),
        "max_length": 48,
        "batch_size": 8,
        "epochs": 3,
        "patience": 2,
        "lr": 3e-3,
        "head_lr": 1e-2,
        "dropout": 0.0,
        "warmup_ratio": 0.0,
        "freeze_embeddings": False,  # a random tiny vocabulary must learn its embeddings
        **model,
    }
    return TrainConfig.model_validate(
        {
            "data": DataConfig(source_dir=FIXTURES).model_dump(mode="json"),
            "model": TransformerParams.model_validate(params).model_dump(mode="json"),
            "evaluation": EvalConfig(bootstrap_samples=50).model_dump(mode="json"),
            "refit_full": False,
            "seed": 3,
        }
    )


@contextmanager
def short_home() -> Iterator[Path]:
    """A TAGOPS_HOME with a short path: Ray's session sockets live under it (107-byte limit on Unix)."""
    root = Path(tempfile.mkdtemp(prefix="tgr-", dir="/tmp"))
    try:
        yield root / "home"
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    encoder = write_tiny_encoder(
        tmp_path_factory.mktemp("ray-train") / "tiny-bert", extra_words=FIXTURE_WORDS
    )
    with short_home() as home, isolated_home(home) as settings:
        yield settings, encoder


@pytest.fixture(scope="module")
def driver_lines() -> Iterator[list[str]]:
    """What the Ray Train driver logs at INFO in this process while the module's run trains."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    driver = logging.getLogger("tagops.models.transformer.ray_train")
    handler, level = Keep(logging.INFO), driver.level
    driver.addHandler(handler)
    driver.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        driver.removeHandler(handler)
        driver.setLevel(level)


@pytest.fixture(scope="module")
def trained(env: tuple[Any, Path], driver_lines: list[str]) -> Any:
    from tagops.registry.client import Registry
    from tagops.workloads.train import run_training

    settings, encoder = env
    return run_training(
        tiny_config(encoder, num_workers=2), settings, registry=Registry(settings), run_name="ddp-run"
    )


def test_two_ddp_workers_train_a_model_that_loads_without_ray(trained: Any) -> None:
    import ray

    from tagops.models import load_model, read_model_info

    assert not ray.is_initialized()  # the session was closed; nothing below needs Ray
    info = read_model_info(trained.model_dir)
    assert info["family"] == "transformer"
    assert info["training"]["workers"] == 2
    assert info["training"]["device"] == "cpu"
    assert 1 <= info["training"]["best_epoch"] <= info["training"]["epoch"] <= 3
    model = load_model(trained.model_dir)
    proba = model.predict_proba(["Docker deployment of models", "Image segmentation with CNNs"])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert trained.holdout_report["overall"]["f1"] > 0.6  # a 2-layer random BERT learns the fixtures
    assert trained.version is not None


def test_each_epoch_is_logged_to_the_mlflow_run(env: tuple[Any, Path], trained: Any) -> None:
    from tagops.models import read_model_info
    from tagops.registry.client import Registry

    settings, _ = env
    client = Registry(settings).client
    history = client.get_metric_history(trained.run_id, "epoch.val_f1")
    epochs = read_model_info(trained.model_dir)["training"]["epoch"]
    assert sorted(m.step for m in history) == list(range(1, epochs + 1))
    assert client.get_metric_history(trained.run_id, "epoch.train_loss")
    run = client.get_run(trained.run_id)
    assert run.info.status == "FINISHED"
    assert "holdout.overall.f1" in run.data.metrics
    assert run.data.tags["tagops.run"] == "ddp-run"


def test_the_driver_logs_each_epoch_as_the_workers_report_it(trained: Any, driver_lines: list[str]) -> None:
    from tagops.models import read_model_info

    history = read_model_info(trained.model_dir)["training"]["history"]
    lines = [line for line in driver_lines if line.startswith("epoch ")]
    assert [line.split(",")[0] for line in lines] == [
        f"epoch {epoch}/3: train loss {entry['train_loss']:.3f}"
        for epoch, entry in enumerate(history, start=1)
    ]
    assert all("validation F1" in line for line in lines)
    # Reports arrive while training runs (with the epoch's time); only the last may be caught up at the end.
    assert all(line.endswith(" s)") for line in lines[:-1])


def test_ray_keeps_the_best_checkpoint_and_the_run_record(env: tuple[Any, Path], trained: Any) -> None:
    from tagops.models import read_model_info

    settings, _ = env
    run_dir = settings.home / "ray_results" / "ddp-run"
    training = read_model_info(trained.model_dir)["training"]
    kept = sorted(p.name for p in (run_dir / "val").glob("checkpoint_epoch_*"))
    assert f"checkpoint_epoch_{training['best_epoch']:03d}" in kept
    assert len(kept) <= 2  # the best by validation F1, and the latest
    best = run_dir / "val" / f"checkpoint_epoch_{training['best_epoch']:03d}"
    assert read_model_info(best)["training"]["best_f1"] == training["best_f1"]
    record = json.loads((run_dir / "tagops_run.json").read_text())
    assert record["status"] == "finished"
    assert record["mlflow_run_id"] == trained.run_id


def test_a_finished_run_cannot_be_resumed(env: tuple[Any, Path], trained: Any) -> None:
    from tagops.errors import TagopsError
    from tagops.workloads.train import resume_training

    settings, _ = env
    with pytest.raises(TagopsError, match="already finished"):
        resume_training("ddp-run", settings)
    with pytest.raises(TagopsError, match="no resumable run"):
        resume_training("no-such-run", settings)
