"""Models trained once for the behavioural and quality tests: the standard split of the real dataset.csv."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tagops.config import DataConfig, LinearParams, RulesParams
from tagops.data.stages import snapshot, split_stage, validate_stage
from tagops.inference.predictor import Predictor
from tagops.workloads.fit import fit_stage

SEED = 1234
FAMILIES = ("rules", "linear")


@dataclass(frozen=True)
class RealData:
    train: pd.DataFrame
    val: pd.DataFrame
    holdout: pd.DataFrame


def params_for(family: str) -> RulesParams | LinearParams:
    return RulesParams() if family == "rules" else LinearParams()


@pytest.fixture(scope="package")
def real_data(mirror_dir: Path) -> RealData:
    dataset, holdout = validate_stage(snapshot(mirror_dir / "dataset.csv", mirror_dir / "holdout.csv"))
    train, val = split_stage(dataset, DataConfig())
    return RealData(train, val, holdout)


@pytest.fixture(scope="package")
def predictors(real_data: RealData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Predictor]:
    """Each family fitted on the train part of the seeded 80/20 split, as `tagops train` does first."""
    root = tmp_path_factory.mktemp("models")
    return {
        family: Predictor.from_directory(
            fit_stage(real_data.train, params_for(family), seed=SEED, output_dir=root / family)
        )
        for family in FAMILIES
    }
