"""Serving settings chosen for the served model's family, and the operator's config winning over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagops.config import ServeConfig, load_config
from tagops.serving.profile import TUNED_FIELDS, fit_to_model, model_families

pytestmark = pytest.mark.unit

LINEAR = {"family": "linear"}
ENSEMBLE = {"family": "ensemble", "members": ["transformer", "linear"]}


def test_a_linear_model_gets_the_light_settings() -> None:
    cfg, choices = fit_to_model(ServeConfig(), LINEAR, cpus=2)
    assert (cfg.batch_hold_fraction, cfg.num_cpus, cfg.predict_in_thread) == (0.0, 1.0, False)
    assert [c.field for c in choices] == list(TUNED_FIELDS)
    assert {c.source for c in choices} == {"model"}
    assert all(c.reason.startswith("linear model: ") for c in choices)


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1.0), (2, 2.0), (2.5, 2.0), (16, 4.0)])
def test_an_ensemble_with_a_transformer_gets_the_transformer_settings(cpus: float, threads: float) -> None:
    cfg, choices = fit_to_model(ServeConfig(), ENSEMBLE, cpus=cpus)
    assert (cfg.batch_hold_fraction, cfg.num_cpus, cfg.predict_in_thread) == (0.25, threads, False)
    assert choices[0].reason.startswith("ensemble+transformer+linear model: ")


def test_an_ensemble_without_a_transformer_is_light() -> None:
    cfg, _ = fit_to_model(ServeConfig(), {"family": "ensemble", "members": ["rules", "linear"]}, cpus=2)
    assert cfg.batch_hold_fraction == 0.0


def test_what_the_config_file_sets_is_kept_even_at_the_default(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("batch_hold_fraction: 0.0\nmax_batch_size: 32\nmax_items: 32\n")
    written = load_config(ServeConfig, path)
    cfg, choices = fit_to_model(written, ENSEMBLE, cpus=2)
    assert cfg.batch_hold_fraction == 0.0  # pinned by the operator, though the family's value is 0.25
    assert cfg.num_cpus == 2.0 and cfg.max_batch_size == 32 and cfg.max_items == 32
    assert [(c.field, c.source) for c in choices] == [
        ("batch_hold_fraction", "config"),
        ("num_cpus", "model"),
        ("predict_in_thread", "model"),
    ]


def test_command_line_options_count_as_set() -> None:
    cfg = load_config(ServeConfig, None, num_cpus=1.5)
    fitted, choices = fit_to_model(cfg, ENSEMBLE, cpus=2)
    assert fitted.num_cpus == 1.5 and choices[1].source == "config"


def test_fitting_twice_changes_nothing_and_keeps_secrets() -> None:
    cfg = ServeConfig(database_url="sqlite:///x.db", port=9000)
    once, _ = fit_to_model(cfg, ENSEMBLE, cpus=2)
    twice, choices = fit_to_model(once, LINEAR, cpus=2)
    assert twice == once and {c.source for c in choices} == {"config"}
    assert once.database_url == "sqlite:///x.db" and once.port == 9000


def test_only_the_named_fields_are_chosen() -> None:
    cfg, choices = fit_to_model(ServeConfig(), ENSEMBLE, cpus=2, fields=["batch_hold_fraction"])
    assert [c.field for c in choices] == ["batch_hold_fraction"]
    assert cfg.num_cpus == 1.0 and "num_cpus" not in cfg.model_fields_set


def test_model_families_lists_an_ensembles_members() -> None:
    assert model_families(ENSEMBLE) == ["ensemble", "transformer", "linear"]
    assert model_families({}) == ["unknown"]


def test_the_shipped_serve_config_leaves_the_tuned_fields_to_the_model() -> None:
    shipped = load_config(ServeConfig, Path(__file__).parents[2] / "configs" / "serve.yaml")
    assert not set(TUNED_FIELDS) & shipped.model_fields_set
