"""`tagops simulate` end to end on the fixtures, small: a service on loopback, drift, retrain with feedback,
shadow, a canary window, promotion, reload, and the row accounting (under two minutes on 2 cores)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.helpers import isolated_home, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_simulate_closes_the_loop_without_losing_a_row(tmp_path: Path, fixture_dir: Path) -> None:
    config = tmp_path / "loop.yaml"
    config.write_text(
        f"""
retrain:
  train: {{data: {{source_dir: {fixture_dir}}}}}
  gate: {{max_overall_f1_drop: 0.1, max_class_f1_drop: 0.25, behaviour: []}}  # fixtures: too small for it
  policy: {{min_feedback_rows: 10}}
window_rows: 40
in_distribution_windows: 1
shifted_windows: 2
feedback_delay_s: 0.2
pipeline: false
bootstrap_samples: 200
monitor: {{min_window_rows: 20, min_feedback_rows: 20, permutations: 500}}
""",
        encoding="utf-8",
    )
    output = tmp_path / "simulate.json"
    with isolated_home(tmp_path / "home"):
        result = run_cli(
            "simulate",
            "--family",
            "linear",
            "--config",
            config,
            "--home",
            tmp_path / "sim",
            "--output",
            output,
            timeout=600,
        )
    assert result.returncode == 0, result.explain()
    outcome = json.loads(output.read_text(encoding="utf-8"))
    verdict = outcome["verdict"]
    assert verdict["first_shifted_window_alarm"] is True, outcome["windows"]
    assert verdict["retrained"] and outcome["policy"]["reason"].startswith("drift alarm at")
    assert outcome["reload_for_shadow"]["shadow"]["version"] == outcome["retrain"]["challenger_version"]
    shadow = outcome["shadow_report"]["comparisons"][0]
    assert shadow["rows"] == 24 and shadow["feedback_rows"] == 24
    assert outcome["retrain"]["counts"]["pending_review"] == 5  # the client key's labels wait for review
    rows = outcome["rows"]
    assert verdict["no_row_lost"], rows
    assert rows["items_sent"] == 40 * 4 + 24 * 2 and rows["prediction_rows"] == rows["items_sent"]
    canary = outcome["canary"]  # one shifted window with the challenger answering half the requests
    assert canary["items"] == 40 and 0 < canary["canary_items"] < 40, canary
    assert canary["report"]["canary"]["predictions"] == canary["canary_items"]
    assert canary["report"]["canary"]["labelled"] == canary["canary_items"]
    assert canary["ended"]["state"] == "promoted"  # the promotion kept the warm canary as champion
    assert rows["shadow_rows"] == 24 + canary["items"] - canary["canary_items"]
    assert rows["feedback_rows"] == rows["feedback_accepted"] == 40 * 4 + 5 + 24
    assert verdict["promoted"] and verdict["reloaded_to_new_champion"], outcome["promotion"]
    before_after = outcome["before_after"]["served"]
    assert before_after["rows"] == 24
    assert before_after["new"]["f1"] > before_after["old"]["f1"]
    assert outcome["shadow_vs_served"]["agreement"] == 1.0  # the shadow answered as the champion now does
    assert "before/after on the shifted holdout" in result.stderr and "canary at 50 %" in result.stderr
