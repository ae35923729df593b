"""Tuning's pure parts: the search space from config, the default point inside it, trial parameters."""

from __future__ import annotations

import pytest

from tagops.config import FloatRange, IntRange, LinearParams, TransformerParams, TuneConfig
from tagops.workloads.trial import search_space, trial_params
from tagops.workloads.tune import _same_point

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("family", ["transformer", "linear"])
def test_the_default_is_a_point_of_the_space(family: str) -> None:
    cfg = TuneConfig()
    space, default = search_space(cfg, family)  # type: ignore[arg-type]
    assert space.keys() == default.keys()
    for key, domain in space.items():
        value = default[key]
        if hasattr(domain, "categories"):
            assert value in domain.categories, key
        else:
            assert domain.lower <= value <= domain.upper, key
    params = trial_params(cfg, family, default)  # type: ignore[arg-type]
    assert params == (cfg.transformer if family == "transformer" else cfg.linear)


def test_top_layer_counts_are_searched_when_listed() -> None:
    assert "trainable_layers" not in search_space(TuneConfig(), "transformer")[0]  # not listed: kept
    cfg = TuneConfig.model_validate({"transformer_space": {"trainable_layers": [None, 2, 3]}})
    space, default = search_space(cfg, "transformer")
    assert space["trainable_layers"].categories == [None, 2, 3]
    assert default["trainable_layers"] is None
    assert trial_params(cfg, "transformer", default) == cfg.transformer
    assert trial_params(cfg, "transformer", {**default, "trainable_layers": 2}).trainable_layers == 2


def test_top_layer_counts_that_no_trial_could_train_are_refused() -> None:
    with pytest.raises(ValueError, match=r"transformer\.trainable_layers \(4\) is not one of .*\[None, 2\]"):
        TuneConfig.model_validate(
            {"transformer": {"trainable_layers": 4}, "transformer_space": {"trainable_layers": [None, 2]}}
        )
    with pytest.raises(ValueError, match=r"transformer_space\.trainable_layers 2: .*freeze_encoder"):
        TuneConfig.model_validate(
            {"transformer": {"freeze_encoder": True}, "transformer_space": {"trainable_layers": [None, 2]}}
        )


def test_trial_params_apply_and_validate_sampled_values() -> None:
    cfg = TuneConfig()
    linear = trial_params(cfg, "linear", {"C": 3.0, "word_ngram_range": "1-3", "char_ngram_range": "3-6"})
    assert isinstance(linear, LinearParams)
    assert (linear.C, linear.word_ngram_range, linear.char_ngram_range) == (3.0, (1, 3), (3, 6))
    transformer = trial_params(cfg, "transformer", {"lr": 1e-4, "batch_size": 16, "epochs": 3})
    assert isinstance(transformer, TransformerParams)
    assert (transformer.lr, transformer.batch_size, transformer.epochs) == (1e-4, 16, 3)
    with pytest.raises(ValueError):
        trial_params(cfg, "transformer", {"dropout": 1.5})


def test_ranges_are_checked() -> None:
    with pytest.raises(ValueError):
        FloatRange(low=0.0, high=1.0, log=True)
    with pytest.raises(ValueError):
        FloatRange(low=2.0, high=1.0)
    with pytest.raises(ValueError):
        IntRange(low=3, high=1)


def test_points_compare_with_float_tolerance() -> None:
    assert _same_point({"C": 10.0, "w": "1-2"}, {"C": 10.000000000001, "w": "1-2"})
    assert not _same_point({"C": 10.0, "w": "1-2"}, {"C": 10.0, "w": "1-3"})
    assert not _same_point({"C": 10.0}, {"C": 10.0, "w": "1-2"})
