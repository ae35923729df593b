"""Models trained once for the behavioural and quality tests: the standard split of the real dataset.csv.

Each is trained as the training pipeline trains it (``configs/pipeline.yaml``): on the training rows
augmented by the pipeline's ``augmentation``, then calibrated on the validation split.

Rules and linear fit in seconds and always run. The transformer (and the ensemble built from it and the
linear model) costs minutes on a few CPUs, so it is fitted once per run, with a short recipe, only with
``TAGOPS_RUN_SLOW=1`` (as CI sets); ``TAGOPS_TEST_TRANSFORMER_DIR=<saved transformer folder>`` uses a
transformer already trained on the same split (e.g. the validation model of ``tagops train --model
transformer``) instead of fitting one.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tagops.config import (
    DataConfig,
    EnsembleParams,
    LinearParams,
    PipelineConfig,
    RulesParams,
    TransformerParams,
)
from tagops.config.base import load_config
from tagops.data.augment import augment_rows
from tagops.data.stages import snapshot, split_stage, validate_stage
from tagops.inference.predictor import Predictor
from tagops.workloads.calibrate import calibrate_stage
from tagops.workloads.fit import fit_stage

SEED = 1234
#: The recipe the pipeline trains with: its augmentation and calibration.
PIPELINE = load_config(PipelineConfig, Path(__file__).resolve().parents[2] / "configs" / "pipeline.yaml")
#: The families fitted for every run of the model tests.
FAMILIES = ("rules", "linear")
#: Every family the product trains; the behavioural cases run on all of them.
ALL_FAMILIES = (*FAMILIES, "transformer", "ensemble")
#: The transformer of the model tests: the pipeline's recipe cut to two epochs (the better one on the
#: validation split is kept), in this process rather than on Ray Train. In the full fit the first epochs
#: already reach most of the validation F1, so a short fit stands in for it; the registered transformer
#: itself is checked on the same cases by the promotion gate.
SHORT_TRANSFORMER = TransformerParams(engine="local", epochs=2, patience=None)


@dataclass(frozen=True)
class RealData:
    train: pd.DataFrame
    val: pd.DataFrame
    holdout: pd.DataFrame

    @property
    def train_rows(self) -> pd.DataFrame:
        """The training split as the pipeline fits on it (augmented as configured)."""
        return augment_rows(self.train, PIPELINE.augmentation, seed=SEED)

    def calibrated(self, model_dir: Path) -> Path:
        """``model_dir`` calibrated on the validation split, as the pipeline does after fitting."""
        calibrate_stage(model_dir, self.val, PIPELINE.calibration, PIPELINE.evaluation)
        return model_dir


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
            real_data.calibrated(
                fit_stage(real_data.train_rows, params_for(family), seed=SEED, output_dir=root / family)
            )
        )
        for family in FAMILIES
    }


@pytest.fixture(scope="package")
def transformer_dir(real_data: RealData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A transformer trained on the train split: ``TAGOPS_TEST_TRANSFORMER_DIR``, else fitted here."""
    from tagops.models.base import read_model_info

    given = os.environ.get("TAGOPS_TEST_TRANSFORMER_DIR")
    if given:
        folder = Path(given)
        family = read_model_info(folder).get("family")
        if family != "transformer":
            raise ValueError(f"TAGOPS_TEST_TRANSFORMER_DIR={folder}: a {family} model, not a transformer")
        return folder
    if os.environ.get("TAGOPS_RUN_SLOW") != "1":
        pytest.skip("fits a transformer (minutes): set TAGOPS_RUN_SLOW=1 or TAGOPS_TEST_TRANSFORMER_DIR")
    return real_data.calibrated(
        fit_stage(
            real_data.train_rows,
            SHORT_TRANSFORMER,
            seed=SEED,
            val=real_data.val,
            output_dir=tmp_path_factory.mktemp("models") / "transformer",
        )
    )


@pytest.fixture(scope="package")
def transformer_predictor(transformer_dir: Path) -> Predictor:
    return Predictor.from_directory(transformer_dir)


@pytest.fixture(scope="package")
def ensemble_predictor(
    transformer_dir: Path,
    predictors: dict[str, Predictor],
    real_data: RealData,
    tmp_path_factory: pytest.TempPathFactory,
) -> Predictor:
    """The pipeline's ensemble, assembled as it does from members already trained: transformer + linear."""
    from tagops.models.base import read_model_info
    from tagops.models.ensemble import member_dirname, write_descriptor

    members = (
        TransformerParams.model_validate(read_model_info(transformer_dir)["params"]),
        LinearParams(),
    )
    sources = (transformer_dir, Path(predictors["linear"].metadata["path"]))
    output = tmp_path_factory.mktemp("models") / "ensemble"
    for index, (member, source) in enumerate(zip(members, sources, strict=True)):
        shutil.copytree(source, output / member_dirname(index, member.family))
    write_descriptor(output, EnsembleParams(members=members))
    return Predictor.from_directory(real_data.calibrated(output))


def predictor_of(request: pytest.FixtureRequest, family: str) -> Predictor:
    """The family's predictor; the transformer and the ensemble are built only when a test asks for them."""
    if family in FAMILIES:
        predictors: dict[str, Predictor] = request.getfixturevalue("predictors")
        return predictors[family]
    predictor: Predictor = request.getfixturevalue(f"{family}_predictor")
    return predictor
