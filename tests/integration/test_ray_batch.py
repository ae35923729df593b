"""Batch inference on Ray Data (an actor pool of predictors) writes what the in-process path writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tagops.config import TransformerParams
from tests.integration.helpers import isolated_home, run_cli
from tests.integration.test_ray_train import short_home
from tests.tiny_encoder import fixture_words, write_tiny_encoder

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURE_WORDS = fixture_words(FIXTURES / "dataset.csv", FIXTURES / "holdout.csv")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path, Path]]:
    """A tiny transformer trained in process on the fixtures, and a 400-row input file."""
    from tagops.data.clean import build_text
    from tagops.models.transformer import TransformerModel

    root = tmp_path_factory.mktemp("ray-batch")
    encoder = write_tiny_encoder(root / "tiny-bert", extra_words=FIXTURE_WORDS)
    frame = pd.read_csv(FIXTURES / "dataset.csv")
    texts = [build_text(t, d) for t, d in zip(frame.title, frame.description, strict=True)]
    params = TransformerParams(
        encoder=str(encoder),
        engine="local",
        epochs=2,
        batch_size=8,
        max_length=48,
        lr=3e-3,
        freeze_embeddings=False,
    )
    model_dir = root / "model"
    TransformerModel(params).fit(texts, frame.tag.tolist(), seed=1).save(model_dir)
    items = pd.concat([frame] * 5, ignore_index=True).drop(columns=["created_on"])
    items["id"] = range(1, len(items) + 1)
    items.loc[3, "description"] = None  # a missing description is an empty one on both paths
    input_path = root / "items.csv"
    items.to_csv(input_path, index=False)
    with short_home() as home, isolated_home(home) as settings:
        yield settings, model_dir, input_path


def test_ray_data_actor_pool_writes_what_the_in_process_path_writes(
    env: tuple[Any, Path, Path], tmp_path: Path
) -> None:
    """`tagops predict --engine ray`: the input order is kept and the threshold reaches the actors."""
    from tagops.inference.predictor import Predictor, predict_file

    _, model_dir, input_path = env
    result = run_cli(
        "predict", "--model", model_dir, "--input", input_path, "--output", tmp_path / "ray.csv",
        "--engine", "ray", "--threshold", "0.4", timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.explain()
    assert "400 predictions" in result.stdout
    predict_file(Predictor.from_directory(model_dir, threshold=0.4), input_path, tmp_path / "local.csv")
    ours, theirs = pd.read_csv(tmp_path / "ray.csv"), pd.read_csv(tmp_path / "local.csv")
    assert ours["id"].tolist() == list(range(1, 401))
    assert theirs["abstained"].any()  # so the threshold is tested
    assert list(ours.columns) == list(theirs.columns)
    pd.testing.assert_frame_equal(ours, theirs, check_exact=False, atol=2e-6)


def test_auto_engine_keeps_small_files_and_other_families_in_process(env: tuple[Any, Path, Path]) -> None:
    from tagops.inference.predictor import Predictor
    from tagops.workloads import batch

    _, model_dir, input_path = env
    predictor = Predictor.from_directory(model_dir)
    assert batch.choose_engine("auto", predictor, input_path) == "local"  # 400 rows
    assert batch.choose_engine("ray", predictor, input_path) == "ray"
    big = input_path.with_name("big.csv")
    big.write_text("title\n" + "x\n" * batch.AUTO_RAY_ROWS)
    assert batch.choose_engine("auto", predictor, big) == "ray"
