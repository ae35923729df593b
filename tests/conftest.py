"""Shared fixtures: an isolated TAGOPS_HOME per test, the shipped fixture data, the real data mirror.

Also chooses the hypothesis profile for the whole run, before any test module builds its ``settings``:

- ``ci`` (loaded when ``CI`` is set, as ``.ci/run`` and CI services do): derandomized, so every run tries
  the same examples and a red build is reproducible from its commit; no example database; a failure
  prints the ``@reproduce_failure`` blob.
- ``dev`` (everywhere else): fresh random examples each run, so local runs keep exploring; failures are
  kept in ``.hypothesis/`` and replayed first on the next run.

``HYPOTHESIS_PROFILE=ci|dev`` (or pytest's ``--hypothesis-profile``) picks one explicitly. Neither profile
has a deadline or the too-slow health check: on a loaded machine a slow example is not a bug, and both
checks would make the suite flaky. Tests may still set their own ``max_examples``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MIRROR = Path(os.environ.get("TAGOPS_DATA_MIRROR") or ROOT.parent / "shared" / "datasets" / "madewithml")

#: Examples per property test in both profiles, unless the test sets its own count.
HYPOTHESIS_EXAMPLES = 100

settings.register_profile(
    "dev",
    settings.get_profile("default"),
    max_examples=HYPOTHESIS_EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    settings.get_profile("default"),
    max_examples=HYPOTHESIS_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def hypothesis_profile(environ: Mapping[str, str]) -> str:
    """The profile a run uses: ``HYPOTHESIS_PROFILE`` if set, else ``ci`` when ``CI`` is set, else ``dev``."""
    if chosen := environ.get("HYPOTHESIS_PROFILE"):
        return chosen
    return "ci" if environ.get("CI", "").strip().lower() not in ("", "0", "false", "no") else "dev"


settings.load_profile(hypothesis_profile(os.environ))


def worker_scope(nodeid: str) -> str:
    """The unit of work ``make test`` hands to one xdist worker: tests that share an expensive fixture.

    - a unit test is a unit of its own (they are spread one by one);
    - the model tests are one unit (their fitted families are package fixtures);
    - the integration modules that start Ray (named ``test_ray_*``) are one unit, since two embedded
      Ray clusters at once would only fight over the same CPUs;
    - any other test module is one unit: its tests share what its module fixtures built (a trained
      home, a running server) and run in file order, as some of them rely on.
    """
    path = PurePosixPath(nodeid.split("::", 1)[0])
    folder = path.parts[1] if len(path.parts) > 2 else ""
    if folder == "unit":
        return nodeid
    if folder == "model":
        return "tests/model"
    if folder == "integration" and path.stem.startswith("test_ray_"):
        return "tests/integration/test_ray_*"
    return str(path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` hands out work by :func:`worker_scope` (biggest units first).

    xdist's own loadgroup reads ``xdist_group`` marks by renaming test ids, which this pytest no longer
    allows; the scopes are derived from the test ids instead, so no test needs a mark.
    """
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return worker_scope(nodeid)

    return SharedFixtureScheduling(config, log)


#: Variables that point a test at servers outside its own home (a team's MLflow, a running Ray cluster):
#: every isolated home clears them.
FOREIGN_SERVERS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "TAGOPS_MLFLOW_TRACKING_URI",
    "RAY_ADDRESS",
    "TAGOPS_RAY_ADDRESS",
)


@contextmanager
def restored_process_state() -> Iterator[None]:
    """Undo what a CLI entry point does to the process: environment variables, root logging handlers (closed),
    the levels of the root and ``tagops`` loggers, and ``sys.excepthook`` (Typer installs its own)."""
    environ = dict(os.environ)
    excepthook = sys.excepthook
    loggers = [logging.getLogger(), logging.getLogger("tagops")]
    handlers = list(loggers[0].handlers)
    levels = [logger.level for logger in loggers]
    try:
        yield
    finally:
        for handler in list(loggers[0].handlers):
            if handler not in handlers:
                loggers[0].removeHandler(handler)
                handler.close()
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
        os.environ.clear()
        os.environ.update(environ)
        sys.excepthook = excepthook


@pytest.fixture(scope="module", autouse=True)
def module_leaves_the_environment_as_it_found_it() -> Iterator[None]:
    """Restore the process environment after each module.

    MLflow's ``set_tracking_uri`` and ``set_registry_uri`` write ``MLFLOW_TRACKING_URI`` and
    ``MLFLOW_REGISTRY_URI`` into it, so a module that opens a registry in this process would otherwise
    hand its home to every later module, and to the Ray nodes a later module starts (their jobs would
    register there).
    """
    environ = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(environ)


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
    for key in FOREIGN_SERVERS:
        monkeypatch.delenv(key, raising=False)
    if (MIRROR / "dataset.csv").is_file():
        monkeypatch.setenv("TAGOPS_DATA_MIRROR", str(MIRROR))
    yield home
