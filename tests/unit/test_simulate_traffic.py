"""The simulated stream: the shifted vocabulary, the topic mix, and the before/after numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tagops.config import SimulateConfig
from tagops.simulation.report import before_after
from tagops.simulation.traffic import draw_mix, rewrite_vocabulary, shifted_frame
from tests.unit.conftest import make_projects

pytestmark = pytest.mark.unit


def test_the_shifted_vocabulary_shares_no_word_with_the_original() -> None:
    assert rewrite_vocabulary("YOLO image detection, v2 (2021)") == "OLOY egami noitceted, v2 (2021)"
    frame = make_projects(5)
    shifted = shifted_frame(frame)
    assert shifted["tag"].tolist() == frame["tag"].tolist() and shifted["id"].tolist() == frame["id"].tolist()
    original = {w.lower() for t in frame["title"] for w in t.split() if w.isalpha() and len(w) > 3}
    rewritten = {w.lower() for t in shifted["title"] for w in t.split() if w.isalpha() and len(w) > 3}
    assert original and not original & rewritten


def test_the_mix_is_drawn_without_replacement_until_a_tag_runs_out() -> None:
    pool = make_projects(20)  # 20 rows per tag
    rng, used = np.random.default_rng(0), set[int]()
    mix = {"computer-vision": 0.5, "mlops": 0.25, "other": 0.25}
    first = draw_mix(pool, mix, 20, rng, used)
    assert first["tag"].value_counts().to_dict() == {"computer-vision": 10, "mlops": 5, "other": 5}
    second = draw_mix(pool, mix, 20, rng, used)
    assert not set(first["title"]) & set(second["title"])  # no row twice while unused rows remain
    third = draw_mix(pool, mix, 20, rng, used)  # computer-vision has run out: topped up with repeats
    assert len(third) == 20 and third["tag"].value_counts()["computer-vision"] == 10


def test_before_after_measures_the_margin_on_the_same_rows() -> None:
    truth = ["mlops", "other", "computer-vision", "natural-language-processing"] * 25
    old = ["other"] * 100
    result = before_after(truth, old, truth, samples=300, seed=1)
    assert result["rows"] == 100 and result["new"]["f1"] == pytest.approx(1.0)
    assert result["margin"] == pytest.approx(1.0 - result["old"]["f1"])
    assert result["margin_ci95"][0] > 0.5


def test_the_simulate_config_refuses_an_unknown_tag_in_the_mix() -> None:
    with pytest.raises(ValueError, match="shifted_mix"):
        SimulateConfig(shifted_mix={"robotics": 1.0})
    assert isinstance(SimulateConfig().shifted_mix, dict)
    assert pd.Series(SimulateConfig().shifted_mix).sum() == pytest.approx(1.0)
