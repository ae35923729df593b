"""The steps of .github/workflows, run as the workflows run them: `make TARGET` in the repository.

workloads: `make data-check` on the real data; `make champion-pull` from a "production" registry (its own
home and MLflow store, as a team server would be); `make run` on this checkout with a small pipeline
config (the fixtures, linear only) into the branch's embedded registry; `make pr-gate`, passing and
refused. loop: `make loop-once`. deploy: `make deploy-canary` runs in test_rollout.py against a service.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tagops.config import DataConfig, LinearParams, TrainConfig
from tests.integration.helpers import ROOT, isolated_home, run_make, train_linear_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Env:
    settings: Any
    root: Path
    production_uri: str
    production_version: int


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[Env]:
    from tagops.registry.client import Registry

    root = tmp_path_factory.mktemp("workflows")
    with isolated_home(root / "production") as production:
        registry = Registry(production)
        trained_version = train_linear_champion(production, fixture_dir, registry, C=0.5)
        production_uri = production.tracking_uri
    pipeline = root / "pipeline.yaml"
    pipeline.write_text(
        f"data: {{source_dir: {fixture_dir}}}\nmodels: [{{family: linear}}]\n"
        "evaluation: {bootstrap_samples: 200}\ngate: {behaviour: []}\n",
        encoding="utf-8",
    )
    with isolated_home(root / "branch") as branch:
        result = run_make("run", CONFIG=pipeline)
        assert result.returncode == 0, result.explain()
        yield Env(branch, root, production_uri, trained_version)


def test_data_check_pulls_validates_and_tests_the_data(mirror_dir: Path, tmp_path: Path) -> None:
    with isolated_home(tmp_path / "home", mirror=mirror_dir):
        result = run_make("data-check", timeout=900)
    assert result.returncode == 0, result.explain()
    assert "passed" in result.stdout and " failed" not in result.stdout


def test_the_pull_request_gate_passes_against_the_pulled_production_champion(env: Env) -> None:
    pulled = run_make("champion-pull", env={"MLFLOW_TRACKING_URI": env.production_uri})
    assert pulled.returncode == 0, pulled.explain()
    champion_dir = env.settings.home / "production-champion"
    assert (champion_dir / "model.json").is_file()
    gated = run_make("pr-gate", CONFIG=env.root / "pipeline.yaml")
    assert gated.returncode == 0, gated.explain()
    gate_dir = env.settings.home / "reports" / "gate"
    verdict = json.loads((gate_dir / "gate.json").read_text(encoding="utf-8"))
    assert verdict["passed"] is True and verdict["champion"]["uri"] == str(champion_dir)
    markdown = (gate_dir / "gate.md").read_text(encoding="utf-8")
    assert "passes the gate" in markdown and "| mlops |" in markdown
    assert f"{verdict['challenger']['f1']:.4f}" in markdown


def test_the_pull_request_gate_fails_the_check_when_it_refuses(env: Env, fixture_dir: Path) -> None:
    import pandas as pd

    from tagops.registry.client import Registry
    from tagops.workloads.train import run_training

    # A branch that broke its labels (every project tagged with the next tag) makes its champion.
    broken = env.root / "broken-labels"
    broken.mkdir()
    dataset = pd.read_csv(fixture_dir / "dataset.csv", dtype=str, keep_default_na=False)
    tags = sorted(set(dataset["tag"]))
    dataset["tag"] = [tags[(tags.index(tag) + 1) % len(tags)] for tag in dataset["tag"]]
    dataset.to_csv(broken / "dataset.csv", index=False)
    (broken / "holdout.csv").write_bytes((fixture_dir / "holdout.csv").read_bytes())
    registry = Registry(env.settings)
    good = registry.alias_version("champion")
    weak = run_training(
        TrainConfig(data=DataConfig(source_dir=broken), model=LinearParams()), env.settings, registry=registry
    )
    registry.set_alias("champion", int(weak.version or 0))
    gate_dir = env.root / "refused"
    try:
        gated = run_make(
            "pr-gate",
            CONFIG=env.root / "pipeline.yaml",
            GATE_DIR=gate_dir,
            CHAMPION_DIR=env.settings.home / "production-champion",
        )
    finally:
        registry.set_alias("champion", int(good or 0))
    assert gated.returncode != 0 and "Error 4" in gated.stderr, gated.explain()
    verdict = json.loads((gate_dir / "gate.json").read_text(encoding="utf-8"))
    assert verdict["passed"] is False and verdict["reason"].startswith("overall F1 falls by")
    assert verdict["challenger"]["f1"] < verdict["champion"]["f1"]
    assert "is refused by the gate" in (gate_dir / "gate.md").read_text(encoding="utf-8")


def test_the_scheduled_loop_step_runs_a_turn(env: Env) -> None:
    config = env.root / "loop.yaml"
    config.write_text(
        (ROOT / "configs" / "loop.yaml")
        .read_text(encoding="utf-8")
        .replace("pipeline: true", "pipeline: false"),
        encoding="utf-8",
    )
    result = run_make("loop-once", LOOP_CONFIG=config)
    assert result.returncode == 0, result.explain()
    (turn,) = (json.loads(line) for line in (env.settings.home / "logs" / "loop.jsonl").open())
    assert turn["status"] == "done"
    assert turn["result"]["monitor"]["num_rows"] == 0  # nothing served yet
    assert turn["result"]["retrain"]["decision"]["run"] is False
