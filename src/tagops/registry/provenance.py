"""Provenance recorded with every training run: the git commit and the versions that decide a result."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata

TRACKED_PACKAGES = (
    "tagops",
    "scikit-learn",
    "numpy",
    "pandas",
    "torch",
    "transformers",
    "ray",
    "mlflow",
    "zenml",
    "pandera",
    "safetensors",
)


def git_commit() -> str:
    """The current git commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a run's result."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
