"""Frozen, strict run configuration loaded from YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tagops.config import (
    DataConfig,
    EvalConfig,
    GateConfig,
    LinearParams,
    PipelineConfig,
    RetrainConfig,
    RulesParams,
    ServeConfig,
    SimulateConfig,
    TrainConfig,
    TuneConfig,
    load_config,
    load_yaml,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize(
    ("config", "field", "value"),
    [
        (TrainConfig(), "seed", 1),
        (DataConfig(), "val_size", 0.5),
        (LinearParams(), "C", 1.0),
        (RulesParams(), "temperature", 2.0),
        (EvalConfig(), "threshold", 0.3),
        (GateConfig(), "max_class_f1_drop", 0.1),
        (PipelineConfig(), "models", ()),
    ],
)
def test_configs_are_frozen(config: object, field: str, value: object) -> None:
    before = getattr(config, field)
    with pytest.raises(ValidationError, match="frozen"):
        setattr(config, field, value)
    assert getattr(config, field) == before


def test_nested_configs_are_frozen_too() -> None:
    cfg = TrainConfig()
    with pytest.raises(ValidationError):
        cfg.model.cleaning.lower = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("model", "raw"),
    [
        (TrainConfig, {"sed": 1}),
        (DataConfig, {"val_sise": 0.3}),
        (EvalConfig, {"treshold": 0.5}),
        (GateConfig, {"max_overall_drop": 0.1}),
        (PipelineConfig, {"model": [{"family": "rules"}]}),
    ],
)
def test_unknown_keys_are_rejected(model: type, raw: dict) -> None:
    (key,) = raw
    with pytest.raises(ValidationError, match=key) as info:
        model.model_validate(raw)
    assert info.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"data": {"val_size": 0.0}}, "val_size"),
        ({"data": {"val_size": 1.0}}, "val_size"),
        ({"evaluation": {"threshold": 1.5}}, "threshold"),
        ({"model": {"family": "linear", "C": 0}}, "C"),
        ({"model": {"family": "linear", "max_features": 10}}, "max_features"),
        ({"model": {"family": "rules", "min_term_count": 0}}, "min_term_count"),
        ({"model": {"family": "svm"}}, "family"),
    ],
)
def test_out_of_range_values_are_rejected(raw: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainConfig.model_validate(raw)


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_typo_at_top_level_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "seed: 3\nregister_modle: false\n")
    with pytest.raises(ValidationError, match="register_modle"):
        load_config(TrainConfig, path)


def test_yaml_typo_in_model_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  family: linear\n  c: 3.0\n")
    with pytest.raises(ValidationError) as info:
        load_config(TrainConfig, path)
    (error,) = info.value.errors()
    assert error["loc"][-1] == "c"
    assert error["type"] == "extra_forbidden"


def test_yaml_typo_in_pipeline_gate_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "gate:\n  max_overall_f1_dorp: 0.01\n")
    with pytest.raises(ValidationError, match="max_overall_f1_dorp"):
        load_config(PipelineConfig, path)


def test_discriminated_union_picks_the_family(tmp_path: Path) -> None:
    rules = load_config(TrainConfig, write(tmp_path, "model:\n  family: rules\n  seed_weight: 2.5\n"))
    assert isinstance(rules.model, RulesParams)
    assert rules.model.seed_weight == 2.5
    linear = load_config(TrainConfig, write(tmp_path, "model:\n  family: linear\n  C: 2.0\n"))
    assert isinstance(linear.model, LinearParams)
    assert linear.model.C == 2.0
    # A field of the other family is a typo, not silently ignored.
    with pytest.raises(ValidationError, match="seed_weight"):
        TrainConfig.model_validate({"model": {"family": "linear", "seed_weight": 2.0}})


def test_families_keep_their_own_cleaning_defaults() -> None:
    assert RulesParams().cleaning.remove_stopwords is True
    assert LinearParams().cleaning.remove_stopwords is False


def test_overrides_apply_and_none_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "seed: 3\nmodel:\n  family: rules\n")
    assert load_config(TrainConfig, path, seed=9).seed == 9
    assert load_config(TrainConfig, path, seed=None).seed == 3
    assert load_config(TrainConfig, None).model == LinearParams()


def test_empty_yaml_gives_defaults(tmp_path: Path) -> None:
    assert load_config(PipelineConfig, write(tmp_path, "")) == PipelineConfig()
    assert load_config(PipelineConfig, None) == PipelineConfig()


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "key: [unclosed\n"])
def test_yaml_that_is_not_a_mapping_names_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=str(path)):
        load_yaml(path)


def test_missing_yaml_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"absent\.yaml"):
        load_yaml(tmp_path / "absent.yaml")


def test_pipeline_rejects_duplicate_families() -> None:
    with pytest.raises(ValidationError, match="each model family may appear once"):
        PipelineConfig.model_validate(
            {"models": [{"family": "rules"}, {"family": "linear"}, {"family": "rules"}]}
        )


def test_pipeline_rejects_no_models() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        PipelineConfig.model_validate({"models": []})


def test_pipeline_train_config_carries_shared_sections() -> None:
    pipeline = PipelineConfig.model_validate(
        {
            "data": {"val_size": 0.3},
            "evaluation": {"threshold": 0.4},
            "seed": 77,
            "models": [{"family": "rules"}],
        }
    )
    (model,) = pipeline.models
    train = pipeline.train_config(model)
    assert train.model is model
    assert (train.data, train.evaluation, train.seed) == (pipeline.data, pipeline.evaluation, 77)


def test_config_round_trips_through_json() -> None:
    cfg = PipelineConfig()
    assert PipelineConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    train = TrainConfig(model=RulesParams(mined_terms_per_class=5))
    assert TrainConfig.model_validate(train.model_dump(mode="json")) == train


def test_repo_configs_exist() -> None:
    assert {p.name for p in CONFIGS} >= {"pipeline.yaml", "train-linear.yaml", "train-rules.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_repo_configs_load(path: Path) -> None:
    if path.name.startswith("pipeline"):
        cfg = load_config(PipelineConfig, path)
        assert [m.family for m in cfg.models] == ["rules", "linear", "transformer", "ensemble"]
        # The ensemble's members are the pipeline's own models: it is assembled, nothing trains twice.
        by_family = {m.family: m for m in cfg.models}
        assert all(by_family[m.family] == m for m in by_family["ensemble"].members)
    elif path.name.startswith("tune"):
        assert load_config(TuneConfig, path).trials >= 1
    elif path.name.startswith("serve"):
        assert load_config(ServeConfig, path).host == "127.0.0.1"
    elif path.name.startswith("loop"):
        assert load_config(SimulateConfig, path).retrain == load_config(RetrainConfig, path)
    else:
        train = load_config(TrainConfig, path)
        assert train.model.family in path.stem
