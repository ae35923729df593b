"""Shared fixtures: an isolated TAGOPS_HOME per test, the shipped fixture data, the real data mirror."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MIRROR = Path(os.environ.get("TAGOPS_DATA_MIRROR") or ROOT.parent / "shared" / "datasets" / "madewithml")


@pytest.fixture(scope="session")
def fixture_dir() -> Path:
    """Small synthetic dataset shipped with the project (dataset.csv and holdout.csv)."""
    return FIXTURES


@pytest.fixture(scope="session")
def mirror_dir() -> Path:
    """The real Made With ML data mirror; tests that need it are skipped where it is absent."""
    if not (MIRROR / "dataset.csv").is_file():
        pytest.skip(f"real data mirror not found at {MIRROR}")
    return MIRROR


@pytest.fixture
def tagops_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh TAGOPS_HOME with every library's state pointed inside it."""
    home = tmp_path / "home"
    monkeypatch.setenv("TAGOPS_HOME", str(home))
    monkeypatch.setenv("ZENML_CONFIG_PATH", str(home / "zenml"))
    for key in ("MLFLOW_TRACKING_URI", "TAGOPS_MLFLOW_TRACKING_URI", "RAY_ADDRESS", "TAGOPS_RAY_ADDRESS"):
        monkeypatch.delenv(key, raising=False)
    if (MIRROR / "dataset.csv").is_file():
        monkeypatch.setenv("TAGOPS_DATA_MIRROR", str(MIRROR))
    yield home
