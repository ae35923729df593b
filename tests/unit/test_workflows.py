"""The workflows in .github/workflows: every step a Makefile target that something here runs, actions pinned,
and the linters `make lint` uses actually refuse a broken workflow."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def steps(workflow: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    return [step for job in data["jobs"].values() for step in job.get("steps", [])]


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, flags=re.MULTILINE))


def targets_run_here() -> dict[str, str]:
    """Each target .ci/run or a test runs, and where."""
    found = {
        t: ".ci/run" for t in re.findall(r"^make (\S+)", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    }
    for path in (ROOT / "tests").rglob("*.py"):
        for target in re.findall(r"run_make\(\s*\"([a-z-]+)\"", path.read_text(encoding="utf-8")):
            found.setdefault(target, str(path.relative_to(ROOT)))
    return found


def test_the_four_workflows_exist() -> None:
    assert {w.stem for w in WORKFLOWS} == {"ci", "workloads", "deploy", "loop"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.stem)
def test_every_step_is_a_make_target_that_ci_or_a_test_runs(workflow: Path) -> None:
    targets, covered = makefile_targets(), targets_run_here()
    runs = [step["run"].strip() for step in steps(workflow) if "run" in step]
    assert runs, f"{workflow.name} has no step of ours"
    for command in runs:
        match = re.fullmatch(r"make ([a-z][a-z0-9-]*)", command)
        assert match, f"{workflow.name}: step {command!r} is not one `make TARGET`"
        target = match.group(1)
        assert target in targets, f"{workflow.name}: no Makefile target {target!r}"
        assert target in covered, f"{workflow.name}: `make {target}` is run neither by .ci/run nor by a test"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.stem)
def test_actions_are_pinned_to_commits_and_credentials_not_kept(workflow: Path) -> None:
    for step in steps(workflow):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if step["uses"].startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_the_scheduled_loop_runs_a_real_command() -> None:
    import typer.main

    from tagops.cli import app

    cronjob = yaml.safe_load((ROOT / "deploy" / "loop-cronjob.yaml").read_text(encoding="utf-8"))
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:4] == ["tagops", "loop", "run", "--once"]
    group = typer.main.get_command(app)
    run = group.commands["loop"].commands["run"]  # type: ignore[attr-defined]
    options = {name for param in run.params for name in param.opts}
    assert {arg for arg in command[3:] if arg.startswith("--")} <= options
    rayservice = (ROOT / "deploy" / "rayservice.yaml").read_text(encoding="utf-8")
    assert f"image: {container['image']}" in rayservice


BROKEN = {
    "schema": "name: broken\non: push\njobs:\n  a:\n    steps:\n      - run: make lint\n",  # no runs-on
    "unpinned": (
        "name: unpinned\non: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - uses: someone/some-action@main\n"
    ),
}


def test_the_workflow_linters_refuse_a_broken_workflow(tmp_path: Path) -> None:
    (tmp_path / "schema.yml").write_text(BROKEN["schema"], encoding="utf-8")
    schema = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", tmp_path / "schema.yml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert schema.returncode != 0 and "runs-on" in schema.stdout + schema.stderr
    folder = tmp_path / "unpinned"
    folder.mkdir()
    (folder / "unpinned.yml").write_text(BROKEN["unpinned"], encoding="utf-8")
    audit = subprocess.run(
        [BIN / "zizmor", "--offline", "--no-progress", folder / "unpinned.yml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert audit.returncode != 0 and "unpinned" in audit.stdout + audit.stderr
    ours = subprocess.run(
        [BIN / "zizmor", "--offline", "--no-progress", ROOT / ".github" / "workflows"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ours.returncode == 0, ours.stdout + ours.stderr
