"""`tagops models pull`: a registered model copied into a folder that serves without the registry.

The image bakes its model this way (the Dockerfile's MODEL_URI), and CD pulls the team's champion to gate
against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tagops.config import DataConfig, LinearParams, TrainConfig
from tests.integration.helpers import isolated_home, run_cli

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Home:
    settings: Any
    root: Path
    version: int


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, fixture_dir: Path) -> Iterator[Home]:
    from tagops.registry.client import Registry
    from tagops.workloads.train import run_training

    root = tmp_path_factory.mktemp("models-pull")
    with isolated_home(root / "home") as settings:
        registry = Registry(settings)
        cfg = TrainConfig(data=DataConfig(source_dir=fixture_dir), model=LinearParams())
        version = run_training(cfg, settings, registry=registry).version
        assert version is not None
        registry.set_alias("champion", version)
        yield Home(settings, root, version)


def test_pull_writes_the_verified_model_that_serves_from_the_folder(home: Home) -> None:
    from tagops.inference.loading import load_predictor
    from tagops.registry.client import MODEL_SHA_TAG, Registry, model_sha256

    output = home.root / "pulled" / "champion"
    result = run_cli("models", "pull", "--output", output)
    assert result.returncode == 0, result.explain()
    printed = json.loads(result.stdout)
    assert printed["version"] == home.version
    assert printed["model"] == f"models:/tagops/{home.version}"
    assert printed["output"] == str(output.resolve())
    registered = Registry(home.settings).version_info(home.version)["tags"][MODEL_SHA_TAG]
    assert printed[MODEL_SHA_TAG] == registered == model_sha256(output)
    predictor = load_predictor(str(output), home.settings)
    (answer,) = predictor.predict(["Semantic segmentation of images"], [""])
    assert answer["tag"] == "computer-vision"
    assert [p.name for p in output.parent.iterdir()] == ["champion"]  # no staging folder left


def test_pull_names_a_version_and_fills_an_empty_folder(home: Home) -> None:
    output = home.root / "empty"
    output.mkdir()
    result = run_cli("models", "pull", f"models:/tagops/{home.version}", "--output", output)
    assert result.returncode == 0, result.explain()
    assert (output / "model.json").is_file()


@pytest.mark.parametrize(
    ("uri", "error"),
    [
        ("models:/tagops@nobody", "no version has the alias 'nobody'"),
        ("models:/tagops/99", "version 99 not found"),
        ("models:/other@champion", "unknown registered model 'other'"),
    ],
)
def test_pull_of_what_the_registry_does_not_hold_fails_in_one_line(home: Home, uri: str, error: str) -> None:
    output = home.root / "missing"
    result = run_cli("models", "pull", uri, "--output", output)
    assert result.returncode == 1, result.explain()
    assert len(result.error_lines) == 1 and error in result.error_lines[0], result.explain()
    assert not output.exists()


def test_pull_never_writes_over_a_folder_or_takes_a_folder(home: Home) -> None:
    taken = home.root / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("keep me", encoding="utf-8")
    result = run_cli("models", "pull", "--output", taken)
    assert result.returncode == 1, result.explain()
    assert result.error_lines == [f"error: {taken}: exists and is not an empty folder"]
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    nowhere = run_cli("models", "pull", "--output", "/proc/tagops-model")  # no folder can be made there
    assert nowhere.returncode == 1, nowhere.explain()
    assert nowhere.error_lines == [
        "error: /proc/tagops-model: cannot write there (No such file or directory)"
    ]
    folder = run_cli("models", "pull", str(taken), "--output", home.root / "copy")
    assert folder.returncode == 2, folder.explain()
    assert "a folder is already a model" in folder.stderr
