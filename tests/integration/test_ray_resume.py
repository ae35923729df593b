"""Kill `tagops train` after its second epoch, resume it, and end where an uninterrupted run ends.

Slow (three Ray Train runs through the CLI, about 4 minutes on 2 CPUs): runs only with TAGOPS_RUN_SLOW=1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.helpers import isolated_home, run_cli
from tests.integration.test_ray_train import FIXTURE_WORDS, short_home, tiny_config
from tests.tiny_encoder import write_tiny_encoder

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("TAGOPS_RUN_SLOW") != "1", reason="slow: set TAGOPS_RUN_SLOW=1"),
]


def wait_for_checkpoint(epoch: int, root: Path, *, timeout: float, process: subprocess.Popen[str]) -> Path:
    """The validation run folder once Ray has *committed* the checkpoint of ``epoch``.

    A checkpoint folder appears before Ray records it in its manager snapshot; only a recorded one is
    what a resumed run starts from.
    """
    name = f"checkpoint_epoch_{epoch:03d}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for snapshot in root.glob("*/val/checkpoint_manager_snapshot.json"):
            try:
                if name in snapshot.read_text():
                    return snapshot.parent
            except OSError:
                continue
        if process.poll() is not None:
            raise AssertionError(f"training ended (exit {process.returncode}) before {name} was recorded")
        time.sleep(0.2)
    raise AssertionError(f"{name} was not recorded under {root} within {timeout}s")


def test_killed_after_epoch_two_resumes_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    encoder = write_tiny_encoder(tmp_path / "tiny-bert", extra_words=FIXTURE_WORDS)
    cfg = tiny_config(encoder, epochs=8, patience=None)
    config_path = tmp_path / "train.yaml"
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    with short_home() as home, isolated_home(home) as settings:
        results = settings.home / "ray_results"
        reference = run_cli(
            "train", "--config", config_path, "--no-register", timeout=900, fresh_process=True
        )
        assert reference.returncode == 0, reference.explain()
        reference_f1 = json.loads(reference.stdout)["holdout_f1"]
        before = {p.name for p in results.iterdir()}

        process = subprocess.Popen(
            [sys.executable, "-m", "tagops.cli", "train", "--config", str(config_path), "--no-register"],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # the CLI and the Ray cluster it started form one process group
        )
        try:
            val_dir = wait_for_checkpoint(2, results, timeout=600, process=process)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        run_name = val_dir.parent.name
        assert run_name not in before
        record = json.loads((results / run_name / "tagops_run.json").read_text())
        assert record["status"] == "running"
        time.sleep(2)  # let Ray's processes notice their driver is gone

        resumed = run_cli("train", "--resume", run_name, "--no-register", timeout=900, fresh_process=True)
        assert resumed.returncode == 0, resumed.explain()
        output = json.loads(resumed.stdout)
        from tagops.models import read_model_info

        training = read_model_info(Path(output["model_dir"]))["training"]
        assert training["resumed_from_epoch"] >= 2  # continued, not restarted
        assert training["epoch"] == 8
        assert abs(output["holdout_f1"] - reference_f1) <= 0.01
        record = json.loads((results / run_name / "tagops_run.json").read_text())
        assert record["status"] == "finished"
