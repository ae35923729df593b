"""The ensemble family: weighted mean of members' probabilities, saved as member folders, no pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tagops.config import EnsembleParams, LinearParams, RulesParams, TrainConfig, TransformerParams
from tagops.inference.predictor import Predictor
from tagops.models import create_model, load_model, read_model_info
from tagops.models.ensemble import EnsembleModel

from .test_transformer_model import training_data

pytestmark = pytest.mark.unit


def test_default_ensemble_is_transformer_plus_linear() -> None:
    params = TrainConfig.model_validate({"model": {"family": "ensemble"}}).model
    assert isinstance(params, EnsembleParams)
    assert [m.family for m in params.members] == ["transformer", "linear"]


@pytest.mark.parametrize(
    "members",
    [({"family": "linear"},), ({"family": "linear"}, {"family": "linear"})],
)
def test_members_must_be_two_distinct_families(members: tuple[dict[str, str], ...]) -> None:
    with pytest.raises(ValueError, match="distinct member families"):
        EnsembleParams.model_validate({"members": members})


def test_weights_need_one_value_per_member() -> None:
    with pytest.raises(ValueError, match="one non-negative value per member"):
        EnsembleParams(members=(RulesParams(), LinearParams()), weights=(1.0,))


def test_probabilities_are_the_weighted_member_mean(tmp_path: Path) -> None:
    texts, labels = training_data(8)
    params = EnsembleParams(members=(RulesParams(min_term_count=2), LinearParams(C=5.0)), weights=(1.0, 3.0))
    model = create_model(params).fit(texts, labels)  # type: ignore[call-arg]
    assert isinstance(model, EnsembleModel)
    rules, linear = model.members_
    expected = 0.25 * rules.predict_proba(texts) + 0.75 * linear.predict_proba(texts)
    np.testing.assert_allclose(model.predict_proba(texts), expected)
    model.save(tmp_path / "ensemble")
    info = read_model_info(tmp_path / "ensemble")
    assert info["members"] == ["members/0-rules", "members/1-linear"]
    np.testing.assert_array_equal(
        load_model(tmp_path / "ensemble").predict_proba(texts), model.predict_proba(texts)
    )
    # What serving chooses its settings by (tagops.serving.profile): the members' families too.
    described = Predictor.from_directory(tmp_path / "ensemble").describe()
    assert (described["family"], described["members"]) == ("ensemble", ["rules", "linear"])


def test_transformer_member_round_trip(encoder_dir: Path, tmp_path: Path) -> None:
    texts, labels = training_data(3)
    transformer = TransformerParams(
        encoder=str(encoder_dir), engine="local", epochs=1, batch_size=8, max_length=32
    )
    model = EnsembleModel(EnsembleParams(members=(transformer, LinearParams(C=5.0)))).fit(
        texts, labels, seed=2
    )
    model.save(tmp_path / "ensemble")
    loaded = load_model(tmp_path / "ensemble")
    assert read_model_info(tmp_path / "ensemble" / "members" / "0-transformer")["family"] == "transformer"
    np.testing.assert_allclose(loaded.predict_proba(texts), model.predict_proba(texts), atol=1e-12)
