"""`tagops loop run` end to end: a scheduled turn monitors the champion's window, the alarm retrains, the
challenger is promoted; the next turn finds nothing to do; a turn while another holds the lock is skipped.

A linear champion is trained on the synthetic fixtures; the prediction log holds the last hour's traffic
in a new vocabulary (the fixture projects with every word spelled backwards), labelled by a labeller key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from filelock import FileLock

from tests.integration.helpers import isolated_home, log_labelled_rows, run_cli, train_linear_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Env:
    settings: Any
    root: Path
    champion: int
    config: Path


def _log_labelled_traffic(settings: Any, version: int, frame: pd.DataFrame) -> int:
    from tagops.predlog.engine import default_database_url
    from tagops.predlog.log import PredictionLog
    from tagops.serving.keys import KeyStore
    from tagops.serving.state import ServingState

    store = PredictionLog(default_database_url(settings))
    ServingState(store.engine).create_tables()
    labeller, _ = KeyStore(store.engine).create("labelling team", "labeller")
    store.dispose()
    start = datetime.now(UTC) - timedelta(hours=1)
    return log_labelled_rows(settings, version, frame, start, key_id=labeller.key_id)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[Env]:
    from tagops.registry.client import Registry
    from tagops.simulation.traffic import shifted_frame

    root = tmp_path_factory.mktemp("loop")
    with isolated_home(root / "home") as settings:
        registry = Registry(settings)
        first_version = train_linear_champion(settings, fixture_dir, registry)
        dataset = pd.read_csv(fixture_dir / "dataset.csv", dtype=str, keep_default_na=False)
        _log_labelled_traffic(settings, first_version, shifted_frame(dataset))
        config = root / "loop.yaml"
        config.write_text(
            "monitor: {min_window_rows: 20, min_feedback_rows: 20, permutations: 500,"
            " bootstrap_samples: 200}\n"
            "retrain:\n"
            f"  train: {{data: {{source_dir: {fixture_dir}}}}}\n"
            "  gate: {max_overall_f1_drop: 0.1, max_class_f1_drop: 0.2, behaviour: []}\n"
            "  policy: {trigger: on_alert, min_feedback_rows: 20}\n"
            "schedule: {every: 1s, pipeline: false}\n",
            encoding="utf-8",
        )
        yield Env(settings, root, first_version, config)


def test_a_turn_monitors_retrains_on_the_alarm_and_the_next_turn_rests(env: Env) -> None:
    from tagops.registry.client import Registry

    result = run_cli("loop", "run", "--max-turns", "2", "--config", env.config, timeout=600)
    assert result.returncode == 0, result.explain()
    printed = json.loads(result.stdout)
    assert printed["turns"] == 2 and printed["every"] == "1s"
    first, second = (json.loads(line) for line in (env.settings.home / "logs" / "loop.jsonl").open())
    assert first["status"] == "done", first["error"]
    monitor = first["result"]["monitor"]
    assert monitor["alarm"] is True and monitor["model_version"] == env.champion and monitor["num_rows"] >= 20
    assert Path(monitor["summary"]).is_file()
    retrain = first["result"]["retrain"]
    assert retrain["decision"]["run"] is True and retrain["decision"]["reason"].startswith("drift alarm")
    assert retrain["promoted"] is True, retrain["gate"]
    new_version = retrain["challenger_version"]
    assert new_version > env.champion
    assert Registry(env.settings).alias_version("champion") == new_version
    # The next turn watches the new champion, which has answered nothing yet: no alarm, no retrain.
    assert second["status"] == "done", second["error"]
    assert second["result"]["monitor"]["model_version"] == new_version
    assert second["result"]["monitor"]["alarm"] is False
    assert second["result"]["retrain"]["decision"]["run"] is False
    shown = run_cli("loop", "log", "--json")
    assert shown.returncode == 0, shown.explain()
    assert [json.loads(line)["turn"] for line in shown.stdout.splitlines()] == [1, 2]


def test_a_turn_is_skipped_while_another_holds_the_loop(env: Env) -> None:
    with FileLock(str(env.settings.home / "loop.lock")):
        result = run_cli("loop", "run", "--once", "--config", env.config, timeout=300)
    assert result.returncode == 0, result.explain()
    last = json.loads(result.stdout)["last"]
    assert last["status"] == "skipped" and "loop.lock" in last["error"] and last["result"] is None


def test_a_failed_turn_exits_non_zero_and_is_logged(env: Env) -> None:
    broken = env.root / "broken.yaml"
    broken.write_text(
        env.config.read_text(encoding="utf-8").replace(
            "monitor: {", "monitor: {model_uri: 'models:/tagops@no-such-alias', "
        ),
        encoding="utf-8",
    )
    result = run_cli("loop", "run", "--once", "--config", broken, timeout=300)
    assert result.returncode == 1, result.explain()
    last = json.loads(result.stdout)["last"]
    assert last["status"] == "failed" and "no-such-alias" in last["error"]


def test_a_bad_period_is_a_usage_error_naming_it(env: Env) -> None:
    result = run_cli("loop", "run", "--once", "--every", "soon", "--config", env.config)
    assert result.returncode == 2
    assert "a period is a positive number and a unit" in result.stderr
