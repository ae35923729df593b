"""Quality, determinism, capacity and robustness of the trained models on the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagops.config import EvalConfig
from tagops.inference.predictor import Predictor
from tagops.registry.client import model_sha256
from tagops.workloads.evaluate import evaluate_predictor
from tagops.workloads.fit import fit_stage
from tests.model.conftest import FAMILIES, SEED, RealData, params_for

pytestmark = pytest.mark.model

# Stable margins under the project's bars (linear 0.90, rules 0.80 holdout weighted F1). Measured with the
# seeded split: linear 0.916, rules 0.909.
MIN_HOLDOUT_F1 = {"linear": 0.88, "rules": 0.78}


@pytest.mark.parametrize("family", FAMILIES)
def test_holdout_weighted_f1(
    predictors: dict[str, Predictor],
    real_data: RealData,
    family: str,
    record_property: pytest.RecordProperty,
) -> None:
    report = evaluate_predictor(predictors[family], real_data.holdout, EvalConfig(bootstrap_samples=0))
    f1 = report["overall"]["f1"]
    record_property(f"holdout_f1_{family}", round(f1, 4))
    print(f"{family}: holdout weighted F1 {f1:.4f}, macro F1 {report['overall']['macro_f1']:.4f}")
    assert report["overall"]["num_samples"] == 191
    assert f1 >= MIN_HOLDOUT_F1[family], f"{family} holdout weighted F1 {f1:.4f} < {MIN_HOLDOUT_F1[family]}"


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_gives_identical_models(real_data: RealData, family: str, tmp_path: Path) -> None:
    # A seeded sample keeps the two extra fits quick; determinism does not depend on the size.
    subset = real_data.train.sample(n=300, random_state=0)
    dirs = [fit_stage(subset, params_for(family), seed=SEED, output_dir=tmp_path / str(i)) for i in (1, 2)]
    texts = Predictor.texts(real_data.holdout["title"].tolist(), real_data.holdout["description"].tolist())
    first, second = (Predictor.from_directory(d).model.predict_proba(texts) for d in dirs)
    np.testing.assert_array_equal(first, second)
    # Byte-identical artifacts: what makes registration idempotent on model content.
    assert model_sha256(dirs[0]) == model_sha256(dirs[1])


def test_linear_can_fit_its_own_training_set(predictors: dict[str, Predictor], real_data: RealData) -> None:
    # Capacity is about the model's own answer: no abstention (threshold 0).
    raw = EvalConfig(bootstrap_samples=0, threshold=0.0)
    report = evaluate_predictor(predictors["linear"], real_data.train, raw)
    assert report["overall"]["accuracy"] >= 0.99


LINKS = [
    " Code: https://github.com/someone/some-project",
    " (see www.example.org/paper.pdf)",
    " https://arxiv.org/abs/2005.14165 and http://example.com/demo?x=1&y=2",
]


@pytest.mark.parametrize("family", FAMILIES)
def test_links_do_not_change_predictions(
    predictors: dict[str, Predictor], real_data: RealData, family: str
) -> None:
    sample = real_data.holdout.head(60)
    titles = sample["title"].tolist()
    plain = predictors[family].predict(titles, sample["description"].tolist())
    linked_descriptions = [d + LINKS[i % len(LINKS)] for i, d in enumerate(sample["description"])]
    linked = predictors[family].predict(titles, linked_descriptions)
    assert [r["tag"] for r in linked] == [r["tag"] for r in plain]
    # The model's own probabilities: calibration may sharpen them (a temperature below 1), which scales
    # any difference, and what this checks is that cleaning removes the links before the model sees them.
    model = predictors[family].model
    descriptions = sample["description"].tolist()
    worst = np.abs(
        model.predict_proba(Predictor.texts(titles, descriptions))
        - model.predict_proba(Predictor.texts(titles, linked_descriptions))
    ).max()
    assert worst < 0.05
