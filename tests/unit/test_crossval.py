"""benchmarks/crossval.py: folds, the recipe per fold, augmentation and calibration per fold, summaries."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tagops.config import (
    AugmentConfig,
    CalibrationConfig,
    EnsembleParams,
    EvalConfig,
    LinearParams,
    RulesParams,
    TransformerParams,
)
from tagops.settings import Settings

from .conftest import make_projects

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "benchmarks") not in sys.path:  # the script imports its neighbours as a script does
    sys.path.insert(0, str(ROOT / "benchmarks"))
crossval = importlib.import_module("crossval")

EVALUATION = EvalConfig(bootstrap_samples=0)


def run_folds(tmp_path: Path, families: list[Any], **options: Any) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = crossval.cross_validate(
        make_projects(per_label=12),
        families,
        folds=3,
        seed=7,
        val_size=0.25,
        evaluation=EVALUATION,
        workdir=tmp_path / "work",
        settings=Settings(home=tmp_path / "home"),
        **options,
    )
    return runs


def test_every_row_is_held_out_once_and_folds_are_stratified() -> None:
    frame = make_projects(per_label=10)
    folds = crossval.stratified_folds(frame, 5, seed=3)
    held_out = [set(test["id"]) for _, test in folds]
    assert sorted(i for ids in held_out for i in ids) == sorted(frame["id"])
    for rest, test in folds:
        assert set(rest["id"]).isdisjoint(test["id"]) and len(rest) + len(test) == len(frame)
        assert test["tag"].value_counts().to_dict() == dict.fromkeys(frame["tag"].unique(), 2)
    again = crossval.stratified_folds(frame, 5, seed=3)
    assert [list(t["id"]) for _, t in again] == [list(t["id"]) for _, t in folds]
    assert [list(t["id"]) for _, t in crossval.stratified_folds(frame, 5, seed=4)] != [
        list(t["id"]) for _, t in folds
    ]


def test_folds_are_refused_when_a_label_has_fewer_rows_than_folds() -> None:
    frame = make_projects(per_label=4)
    with pytest.raises(ValueError, match="fewer rows"):
        crossval.stratified_folds(frame, 5, seed=3)


@pytest.fixture
def fitted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(family, training rows) of every model fitted, members of an ensemble included."""
    calls: list[tuple[str, int]] = []
    fit_stage = crossval.fit_stage

    def recording_fit_stage(train: pd.DataFrame, params: Any, **options: Any) -> Path:
        calls.append((params.family, len(train)))
        path: Path = fit_stage(train, params, **options)
        return path

    monkeypatch.setattr(crossval, "fit_stage", recording_fit_stage)
    monkeypatch.setattr("tagops.workloads.fit.fit_stage", recording_fit_stage)  # refit's and members'
    return calls


def test_each_family_is_trained_and_scored_once_per_fold_as_the_pipeline_does(
    tmp_path: Path, fitted: list[tuple[str, int]]
) -> None:
    ensemble = EnsembleParams(members=(RulesParams(), LinearParams()))
    runs = run_folds(tmp_path, [ensemble, RulesParams(), LinearParams()])
    assert list(runs) == ["rules", "linear", "ensemble"]  # members first
    for family_runs in runs.values():
        assert [r["fold"] for r in family_runs] == [0, 1, 2]
        assert [r["seed"] for r in family_runs] == [7, 8, 9]
        assert sum(r["rows"]["test"] for r in family_runs) == 48
        for r in family_runs:
            assert r["rows"]["train"] + r["rows"]["val"] == r["rows"]["refit"] == 48 - r["rows"]["test"]
            assert 0.0 <= r["f1"] <= 1.0 and set(r["per_class_f1"]) == set(make_projects(1)["tag"])
            assert r["calibrated"] is True  # the default: calibrated on the fold's validation rows
    # per fold: each member fitted on train, then refit on all the fold's training rows; the ensemble is
    # assembled from them, never fitted
    expected = []
    for r, linear in zip(runs["rules"], runs["linear"], strict=True):
        expected += [("rules", r["rows"]["train"]), ("rules", r["rows"]["refit"])]
        expected += [("linear", linear["rows"]["train"]), ("linear", linear["rows"]["refit"])]
    assert fitted == expected
    assert not any((tmp_path / "work").iterdir())  # each fold's models are deleted once it is scored


def test_an_ensemble_of_other_parameters_than_its_members_is_trained_itself(
    tmp_path: Path, fitted: list[tuple[str, int]]
) -> None:
    ensemble = EnsembleParams(members=(RulesParams(), LinearParams(C=1.0)))
    run_folds(tmp_path, [RulesParams(), LinearParams(), ensemble])
    families = [family for family, _ in fitted]
    assert families.count("ensemble") == 3  # fitted in each fold (its refit refits each member)
    assert families.count("linear") == 3 * 2 * 2  # fit and refit: its own and the ensemble's member


def test_augmentation_touches_the_training_rows_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, str, float, int]] = []

    def augment_rows(frame: pd.DataFrame, augmentation: AugmentConfig, *, seed: int) -> pd.DataFrame:
        calls.append((len(frame), augmentation.recipe, augmentation.fraction, seed))
        return pd.concat([frame, frame], ignore_index=True)

    monkeypatch.setattr(crossval, "augment_rows", augment_rows)
    runs = run_folds(tmp_path, [RulesParams()], augmentation=AugmentConfig(recipe="short", fraction=1.0))
    for r in runs["rules"]:
        plain = 48 - r["rows"]["test"]
        assert r["rows"]["refit"] == 2 * plain
        assert r["rows"]["train"] + 2 * r["rows"]["val"] == 2 * plain  # validation is not augmented
    assert {(recipe, seed) for _, recipe, _, seed in calls} == {("short", 7), ("short", 8), ("short", 9)}


def test_calibration_is_fitted_on_validation_and_given_to_the_refit_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calibrated: list[tuple[str, int]] = []
    copied: list[tuple[str, str]] = []

    def calibrate_stage(
        model_dir: Path, val: pd.DataFrame, calibration: CalibrationConfig, evaluation: EvalConfig
    ) -> dict[str, Any]:
        calibrated.append((model_dir.name, len(val)))
        return {}

    def carry_calibration_stage(model_dir: Path, val_model_dir: Path) -> Path:
        copied.append((val_model_dir.name, model_dir.name))
        return model_dir

    monkeypatch.setattr(crossval, "calibrate_stage", calibrate_stage)
    monkeypatch.setattr(crossval, "carry_calibration_stage", carry_calibration_stage)
    runs = run_folds(tmp_path, [LinearParams()])
    assert [r["calibrated"] for r in runs["linear"]] == [True, True, True]
    assert [name for name, _ in calibrated] == ["linear-val"] * 3
    assert [rows for _, rows in calibrated] == [r["rows"]["val"] for r in runs["linear"]]
    assert copied == [("linear-val", "linear")] * 3


def test_the_recipe_is_the_pipelines_with_the_chosen_engine() -> None:
    cfg = crossval.pipeline_recipe("local")
    families = {p.family: p for p in cfg.models}
    assert set(crossval.FAMILIES) <= set(families)
    transformer, ensemble = families["transformer"], families["ensemble"]
    assert isinstance(transformer, TransformerParams) and transformer.engine == "local"
    assert isinstance(ensemble, EnsembleParams)
    assert [m.model_dump() for m in ensemble.members] == [
        transformer.model_dump(),
        families["linear"].model_dump(),
    ]


def test_summary_gives_mean_spread_and_worst_class() -> None:
    runs = [
        {
            "f1": f1,
            "macro_f1": f1 - 0.1,
            "per_class_f1": {"a": f1, "b": f1 - 0.2},
            "ece": 0.1,
            "abstained": 1,
            "training_seconds": 2.0,
        }
        for f1 in (0.8, 0.9, 1.0)
    ]
    summary = crossval.summarize("linear", runs)
    assert summary["f1"] == pytest.approx({"mean": 0.9, "std": 0.1, "min": 0.8, "max": 1.0})
    assert summary["macro_f1"]["mean"] == pytest.approx(0.8)
    assert summary["worst_class"]["label"] == "b" and summary["worst_class"]["mean"] == pytest.approx(0.7)
    assert summary["abstained"] == 3 and summary["folds"] == 3


def test_output_names_the_augmentation() -> None:
    cfg = crossval.pipeline_recipe("local")
    plain = crossval.parse_args([])
    assert crossval.output_path(plain, crossval.augmentation_of(plain, cfg)).name == (
        "crossval.json" if cfg.augmentation.recipe == "none" else f"crossval-{cfg.augmentation.recipe}.json"
    )
    short = crossval.parse_args(["--augment", "short", "--fraction", "0.3"])
    augmentation = crossval.augmentation_of(short, cfg)
    assert (augmentation.recipe, augmentation.fraction) == ("short", 0.3)
    assert crossval.output_path(short, augmentation).name == "crossval-short.json"
    with pytest.raises(SystemExit):
        crossval.parse_args(["--augment", "synonyms"])
    with pytest.raises(SystemExit):
        crossval.parse_args(["--folds", "1"])


def test_another_config_is_cross_validated_and_named_by_it() -> None:
    path = crossval.ROOT / "configs" / "pipeline-frozen-encoder.yaml"
    args = crossval.parse_args(["--config", str(path), "--augment", "short"])
    cfg = crossval.pipeline_recipe("local", args.config)
    transformer = next(p for p in cfg.models if p.family == "transformer")
    assert transformer.freeze_encoder and transformer.engine == "local"
    augmentation = crossval.augmentation_of(args, cfg)
    assert crossval.output_path(args, augmentation).name == "crossval-pipeline-frozen-encoder-short.json"
    assert crossval.config_name(args.config) == "configs/pipeline-frozen-encoder.yaml"
    default = crossval.parse_args(["--config", str(crossval.ROOT / "configs" / "pipeline.yaml")])
    assert crossval.output_path(default, crossval.augmentation_of(default, cfg)).name == "crossval.json"
