"""The ZenML training pipeline end to end on the synthetic fixtures, in an isolated TAGOPS_HOME.

Three runs share one home (module scope, ~2 minutes in all): a first run, an unchanged re-run that must
reuse cached steps and registered versions, and a run on changed training data that must retrain.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tagops.config import DataConfig, EvalConfig, GateConfig, LinearParams, PipelineConfig, RulesParams
from tests.integration.helpers import isolated_home, read_rows, write_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAMILIES = ["rules", "linear"]
ALWAYS_RUN = ("pull_step", "register_rules", "register_linear", "promote_step")
# refit_<family> exists when PipelineConfig.refit_full is on (the default): train on all of dataset.csv.
CACHEABLE = (
    "validate_step",
    "split_step",
    "train_rules",
    "train_linear",
    "refit_rules",
    "refit_linear",
    "evaluate_val_rules",
    "evaluate_holdout_rules",
    "evaluate_val_linear",
    "evaluate_holdout_linear",
)


@dataclass
class PipelineEnv:
    settings: Any
    data_dir: Path
    cfg: PipelineConfig

    def registry(self) -> Any:
        from tagops.registry.client import Registry

        return Registry(self.settings)


@dataclass
class Run:
    summary: dict[str, Any]
    versions: list[dict[str, Any]]
    history: list[dict[str, Any]]
    dataset_sha256: str
    holdout_sha256: str

    def version_of(self, family: str) -> int:
        return next(m["version"] for m in self.summary["models"] if m["family"] == family)


def _reset_zenml() -> None:
    """ZenML keeps its config and client as process-wide singletons: re-read them from ZENML_CONFIG_PATH."""
    from zenml.client import Client
    from zenml.config.global_config import GlobalConfiguration

    GlobalConfiguration._reset_instance()
    Client._reset_instance()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[PipelineEnv]:
    root = tmp_path_factory.mktemp("pipeline")
    data_dir = root / "data"  # a copy: the changed-data run edits it in place (same path, new content)
    data_dir.mkdir()
    for name in ("dataset.csv", "holdout.csv"):
        shutil.copyfile(fixture_dir / name, data_dir / name)
    cfg = PipelineConfig(
        data=DataConfig(source_dir=data_dir),
        models=(RulesParams(), LinearParams()),  # explicit: the fast families, whatever the defaults become
        evaluation=EvalConfig(bootstrap_samples=100),
        # The 80 synthetic rows do not teach the behavioural cases (tagops.workloads.behaviour); the gate's
        # order and history are the subject here, and the behavioural gate has tests of its own.
        gate=GateConfig(behaviour=()),
    )
    with isolated_home(root / "home") as settings, pytest.MonkeyPatch.context() as mp:
        from tagops.pipelines import training

        # The cache key includes a hash of tagops' source files as they are on disk. Pin it to its value
        # now: the code running in this process is the code imported now, and an edit to src/ made while
        # the module runs (another terminal, an editor saving) must not turn a cache hit into a miss.
        fingerprint = training.code_fingerprint()
        mp.setattr(training, "code_fingerprint", lambda: fingerprint)
        _reset_zenml()
        try:
            yield PipelineEnv(settings, data_dir, cfg)
        finally:
            _reset_zenml()


def _run(env: PipelineEnv) -> Run:
    from tagops.data.ingest import sha256_file
    from tagops.pipelines.training import run_training_pipeline
    from tagops.workloads.promote import read_history

    summary = run_training_pipeline(env.cfg, enable_cache=True)
    return Run(
        summary=summary,
        versions=env.registry().list_versions(),
        history=read_history(env.settings.promotion_history),
        dataset_sha256=sha256_file(env.data_dir / "dataset.csv"),
        holdout_sha256=sha256_file(env.data_dir / "holdout.csv"),
    )


def _step_statuses(run_name: str) -> dict[str, str]:
    from zenml.client import Client

    run = Client().get_pipeline_run(run_name)
    return {name: str(step.status) for name, step in run.steps.items()}


@pytest.fixture(scope="module")
def first_run(env: PipelineEnv) -> Run:
    return _run(env)


@pytest.fixture(scope="module")
def cached_run(env: PipelineEnv, first_run: Run) -> Run:
    return _run(env)


@pytest.fixture(scope="module")
def changed_run(env: PipelineEnv, cached_run: Run) -> Run:
    """Re-run after editing the title of one row that the seeded split puts in the training part."""
    from tagops.data.stages import split_stage
    from tagops.data.validate import load_projects

    path = env.data_dir / "dataset.csv"
    train, _ = split_stage(load_projects(path), env.cfg.data)
    target = str(train["id"].iloc[0])
    rows = read_rows(path)
    edited = [r for r in rows if r["id"] == target]
    assert len(edited) == 1
    edited[0]["title"] += " with quantum annealing hardware"
    write_rows(path, rows)
    return _run(env)


# ------------------------------------------------------------------------------------------ first run
def test_first_run_registers_both_families_and_crowns_one(env: PipelineEnv, first_run: Run) -> None:
    summary = first_run.summary
    assert summary["status"] == "completed"
    assert [m["family"] for m in summary["models"]] == FAMILIES
    versions = [m["version"] for m in summary["models"]]
    assert all(isinstance(v, int) and v >= 1 for v in versions)
    assert len(set(versions)) == 2, "each family must get its own registered version"
    for model in summary["models"]:
        assert model["cached"] is False
        assert 0.5 < model["holdout_f1"] <= 1.0, model  # the synthetic fixtures are easy to learn
        low, high = model["f1_ci95"]
        assert low <= model["holdout_f1"] <= high

    assert {v["version"] for v in first_run.versions} == set(versions)
    registry = env.registry()
    champion = registry.alias_version("champion")
    assert champion in versions
    assert registry.alias_version("challenger") in versions
    for family in FAMILIES:
        info = registry.version_info(first_run.version_of(family))
        assert info["tags"]["family"] == family
        assert info["tags"]["dataset_sha256"] == first_run.dataset_sha256
        assert len(info["tags"]["model_sha256"]) == 64
        assert info["tags"]["gate.decision"] in ("promote", "reject")

    decisions = {d["version"]: d for d in summary["decisions"]}
    assert set(decisions) == set(versions)
    # The gate sees the families in config order: the first one meets no champion and is promoted.
    assert decisions[first_run.version_of("rules")]["promote"] is True
    assert decisions[first_run.version_of("rules")]["reason"] == "no champion yet"


def test_the_in_process_path_runs_the_same_stages_to_the_same_models(
    env: PipelineEnv, first_run: Run
) -> None:
    """``--no-pipeline`` runs the training plan ZenML ran: same models, so the same registered versions."""
    from tagops.pipelines.training import STEPS
    from tagops.workloads.train import run_training_plan, training_plan

    plan = training_plan(env.cfg)
    assert {stage.func.__name__ for stage in plan} <= set(STEPS)  # every stage has its step
    assert set(_step_statuses(first_run.summary["run_name"])) == {stage.name for stage in plan}
    summary = run_training_plan(env.cfg, env.settings)
    for ours, zenml in zip(summary["models"], first_run.summary["models"], strict=True):
        assert (ours["family"], ours["version"]) == (zenml["family"], zenml["version"])
        assert ours["holdout_f1"] == pytest.approx(zenml["holdout_f1"])
    assert len(env.registry().list_versions()) == len(first_run.versions)


def test_first_run_on_a_fresh_store_executes_every_step(first_run: Run) -> None:
    # Nothing was ever run in this home, so no step can legitimately come from the cache; today
    # train_<family> (train split) and refit_<family> (all of dataset.csv) share one cache key, as do
    # evaluate_val_<family> and evaluate_holdout_<family>.
    statuses = _step_statuses(first_run.summary["run_name"])
    assert {name: s for name, s in statuses.items() if s == "cached"} == {}


def test_val_and_holdout_reports_are_measured_on_their_own_rows(env: PipelineEnv, first_run: Run) -> None:
    from tagops.data.stages import split_stage
    from tagops.data.validate import load_projects

    _, val = split_stage(load_projects(env.data_dir / "dataset.csv"), env.cfg.data)
    holdout = load_projects(env.data_dir / "holdout.csv")
    registry = env.registry()
    logged = {}
    for model in first_run.summary["models"]:
        metrics = registry.client.get_run(registry.version_info(model["version"])["run_id"]).data.metrics
        logged[model["family"]] = (metrics["val.overall.num_samples"], metrics["holdout.overall.num_samples"])
    assert logged == {family: (len(val), len(holdout)) for family in FAMILIES}


def test_promotion_history_records_both_versions(first_run: Run) -> None:
    versions = {first_run.version_of(f) for f in FAMILIES}
    assert {r["version"] for r in first_run.history} == versions
    assert len(first_run.history) == 2
    first = first_run.history[0]
    assert first["version"] == first_run.version_of("rules")
    assert first["action"] == "promote"
    assert first["previous_champion"] is None
    assert first["reason"] == "no champion yet"
    for record in first_run.history:
        assert record["action"] in ("promote", "reject")
        assert record["holdout_sha256"] == first_run.holdout_sha256
        assert record["gate"] == {
            "max_overall_f1_drop": 0.0,
            "max_class_f1_drop": 0.05,
            "class_drop_confidence": 0.95,
            "bootstrap_samples": 2000,
            "seed": 1234,
            "behaviour": [],
        }
        assert record["behaviour"] is None  # not checked
    assert first_run.history[-1]["champion"] in versions


def test_mlflow_runs_carry_provenance_params_and_metrics(env: PipelineEnv, first_run: Run) -> None:
    registry = env.registry()
    for model in first_run.summary["models"]:
        info = registry.version_info(model["version"])
        run = registry.client.get_run(info["run_id"])
        params, metrics = run.data.params, run.data.metrics
        assert params["dataset_sha256"] == first_run.dataset_sha256
        assert params["holdout_sha256"] == first_run.holdout_sha256
        assert params["git_commit"]
        assert params["seed"] == "1234"
        assert params["config.model.family"] == model["family"]
        assert "packages.scikit-learn" in params
        assert metrics["holdout.overall.f1"] == pytest.approx(model["holdout_f1"])
        for name in (
            "val.overall.f1",
            "holdout.overall.macro_f1",
            "holdout.per_class.mlops.f1",
            "holdout.ece",
        ):
            assert name in metrics, f"{name} not logged; have {sorted(metrics)}"
        assert run.data.tags["family"] == model["family"]
        assert run.data.tags["registered_version"] == str(model["version"])
        artifacts = {a.path for a in registry.client.list_artifacts(info["run_id"], "evaluation")}
        assert {"evaluation/holdout.json", "evaluation/val.json"} <= artifacts


# ------------------------------------------------------------------------------------- cached re-run
def test_unchanged_rerun_reuses_cached_steps_and_registered_versions(first_run: Run, cached_run: Run) -> None:
    assert cached_run.summary["status"] == "completed"
    for family in FAMILIES:
        assert cached_run.version_of(family) == first_run.version_of(family)
    assert [m["cached"] for m in cached_run.summary["models"]] == [True, True]
    assert len(cached_run.versions) == len(first_run.versions) == 2, "registration must be idempotent"
    assert cached_run.summary["models"] == [{**m, "cached": True} for m in first_run.summary["models"]]

    statuses = _step_statuses(cached_run.summary["run_name"])
    for step in CACHEABLE:
        assert statuses[step] == "cached", statuses
    for step in ALWAYS_RUN:
        assert statuses[step] == "completed", statuses


# ------------------------------------------------------------------------------------ changed data
def test_changed_training_data_is_not_served_from_cache(first_run: Run, changed_run: Run) -> None:
    assert changed_run.summary["status"] == "completed"
    assert changed_run.dataset_sha256 != first_run.dataset_sha256
    assert changed_run.holdout_sha256 == first_run.holdout_sha256
    assert [m["cached"] for m in changed_run.summary["models"]] == [False, False]

    statuses = _step_statuses(changed_run.summary["run_name"])
    for step in ("validate_step", "split_step", "train_rules", "train_linear", "refit_rules", "refit_linear"):
        assert statuses[step] == "completed", statuses

    # The linear model's vocabulary sees the new words, so its content, hence its version, is new.
    new_linear = changed_run.version_of("linear")
    assert new_linear not in {v["version"] for v in first_run.versions}
    assert len(changed_run.versions) > len(first_run.versions)
    newest = next(v for v in changed_run.versions if v["version"] == new_linear)
    assert newest["tags"]["dataset_sha256"] == changed_run.dataset_sha256
    assert new_linear in {r["version"] for r in changed_run.history}
