"""`tagops tune` end to end on the fixtures: Optuna + ASHA on Ray Tune, MLflow child runs, gate.

The linear family keeps it quick (two trials); the transformer uses the same code path with one report
per epoch (covered by the ASHA settings and the unit tests of the search space).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagops.config import DataConfig, EvalConfig, GateConfig, TuneConfig
from tests.integration.helpers import isolated_home
from tests.integration.test_ray_train import FIXTURES, short_home

pytestmark = pytest.mark.integration


def test_tuning_registers_the_best_trial_and_gates_it() -> None:
    from tagops.registry.client import CHAMPION, Registry
    from tagops.workloads.tune import TUNE_RECORD, run_tuning

    cfg = TuneConfig(
        data=DataConfig(source_dir=FIXTURES),
        evaluation=EvalConfig(bootstrap_samples=50),
        gate=GateConfig(behaviour=()),  # the fixtures do not teach the behavioural cases
        trials=2,
    )
    with short_home() as home, isolated_home(home) as settings:
        registry = Registry(settings)
        result = run_tuning(cfg, settings, family="linear", registry=registry, name="tune-test")
        assert len(result.trials) == 2
        default = [t for t in result.trials if t["default"]]
        assert len(default) == 1 and default[0]["config"]["C"] == cfg.linear.C
        assert result.best_val_f1 >= result.default_val_f1  # type: ignore[operator]
        assert result.version is not None
        assert result.gate["promote"] is True  # no champion yet
        assert registry.alias_version(CHAMPION) == result.version

        parent = registry.client.search_runs(
            [registry.experiment_id], filter_string="tags.`tagops.tune` = 'tune-test'"
        )
        children = [r for r in parent if r.data.tags.get("mlflow.parentRunId")]
        (parent_run,) = [r for r in parent if not r.data.tags.get("mlflow.parentRunId")]
        assert len(children) == 2
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent_run.info.run_id}
        assert all(c.info.status == "FINISHED" and "val_f1" in c.data.metrics for c in children)
        assert parent_run.data.metrics["best_val_f1"] == pytest.approx(result.best_val_f1)

        record = json.loads((Path(settings.home) / "ray_results" / "tune-test" / TUNE_RECORD).read_text())
        assert record["status"] == "finished"
        assert record["version"] == result.version


def test_tune_cli_prints_only_json_on_stdout(tmp_path: Path) -> None:
    """Ray Tune prints its own tables; `tagops tune` keeps them off stdout, which carries the result."""
    import yaml

    from tests.integration.helpers import run_cli

    config = tmp_path / "tune.yaml"
    config.write_text(
        yaml.safe_dump({"data": {"source_dir": str(FIXTURES)}, "evaluation": {"bootstrap_samples": 20}})
    )
    with short_home() as home, isolated_home(home):
        result = run_cli(
            "tune", "--model", "linear", "--trials", "1", "--config", config, "--no-register", timeout=600
        )
        assert result.returncode == 0, result.explain()
        output = json.loads(result.stdout)
        assert output["family"] == "linear" and output["version"] is None
        assert "Configuration for experiment" not in result.stdout
