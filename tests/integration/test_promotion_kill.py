"""A promotion SIGKILLed at each of its steps, against the embedded MLflow store, 20 times: the champion
alias is the old or the new version and never an unrecorded one, the history reads back, and the next
`promote` and `rollback` work from whatever was left.

Version 1 (rules) is champion and version 2 (linear) the candidate. Each run promotes version 2 in a
process of its own that kills itself with SIGKILL at one step (before the history line, after it, after
the alias moved, before the version's tags), then checks the state, promotes version 2 again and rolls
back to version 1, so the next run starts where this one did.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tagops.config import DataConfig, EvalConfig, GateConfig, LinearParams, RulesParams, TrainConfig
from tests.integration.helpers import isolated_home

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STEPS = ("before-history", "after-history", "after-alias", "before-tags")
GATE = GateConfig(max_overall_f1_drop=0.5, max_class_f1_drop=1.0, behaviour=())

CHILD = """
import os, signal, sys
from tagops.config import DataConfig, EvalConfig, GateConfig
from tagops.data.stages import pull_stage, validate_stage
from tagops.registry.client import Registry
from tagops.settings import Settings, prepare_environment
from tagops.workloads import promote as steps

step, version, source, gate = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
settings = Settings()
prepare_environment(settings)
registry = Registry(settings)
snap = pull_stage(settings, DataConfig(source_dir=source))
_, holdout = validate_stage(snap)

def die(*_, **__):
    os.kill(os.getpid(), signal.SIGKILL)

def then_die(function):
    def wrapped(*args, **kwargs):
        function(*args, **kwargs)
        die()
    return wrapped

if step == "before-history":
    steps.append_history = die
elif step == "after-history":
    steps.append_history = then_die(steps.append_history)
elif step == "after-alias":
    registry.set_alias = then_die(registry.set_alias)
elif step == "before-tags":
    registry.set_version_tags = die
steps.promote(
    registry,
    holdout=holdout,
    eval_cfg=EvalConfig(),
    gate=GateConfig.model_validate_json(gate),
    history=settings.promotion_history,
    version=version,
)
print("not killed")
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[dict[str, Any]]:
    from tagops.data.stages import pull_stage, validate_stage
    from tagops.registry.client import Registry
    from tagops.workloads.promote import promote
    from tagops.workloads.train import run_training

    root = tmp_path_factory.mktemp("promotion-kill")
    with isolated_home(root / "home") as settings:
        registry = Registry(settings)
        data = DataConfig(source_dir=fixture_dir)
        first = run_training(TrainConfig(data=data, model=RulesParams()), settings, registry=registry)
        second = run_training(TrainConfig(data=data, model=LinearParams()), settings, registry=registry)
        assert (first.version, second.version) == (1, 2)
        _, holdout = validate_stage(pull_stage(settings, data))
        decision = promote(
            registry,
            holdout=holdout,
            eval_cfg=EvalConfig(),
            gate=GATE,
            history=settings.promotion_history,
            version=1,
            trigger="initial",
        )
        assert decision.promote
        yield {"settings": settings, "registry": registry, "holdout": holdout, "fixtures": fixture_dir}


@pytest.mark.parametrize("run", range(20))
def test_a_promotion_killed_at_any_step_leaves_a_state_rollback_and_promote_handle(
    world: dict[str, Any], run: int
) -> None:
    from tagops.registry.client import CHAMPION
    from tagops.workloads.promote import promote, read_history, rollback

    settings, registry = world["settings"], world["registry"]
    history = settings.promotion_history
    step = STEPS[run % len(STEPS)]
    lines_before = len(read_history(history))
    child = subprocess.run(
        [sys.executable, "-c", CHILD, step, "2", str(world["fixtures"]), GATE.model_dump_json()],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, (step, child.returncode, child.stderr[-2000:])
    # What the kill left: the alias is the old or the new version, and a new champion is always recorded.
    champion = registry.alias_version(CHAMPION)
    records = read_history(history)  # reads back, whatever the kill interrupted
    new = records[lines_before:]
    assert champion in (1, 2)
    if step == "before-history":
        assert champion == 1 and new == []
    else:
        assert [(r["action"], r["version"], r["previous_champion"]) for r in new] == [("promote", 2, 1)]
    if step in ("after-alias", "before-tags"):
        assert champion == 2
    if step == "after-history":
        assert champion == 1  # recorded, never applied: the alias is the truth
    # The next promotion and a rollback both work from here, and bring the registry back to version 1.
    again = promote(
        registry,
        holdout=world["holdout"],
        eval_cfg=EvalConfig(),
        gate=GATE,
        history=history,
        version=2,
    )
    assert registry.alias_version(CHAMPION) == 2
    assert again.promote or "already champion" in again.reason
    assert rollback(registry, history=history) == (2, 1)
    assert registry.alias_version(CHAMPION) == 1
