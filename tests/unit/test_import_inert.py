"""Importing tagops is inert (no files, sockets, threads, logging setup, heavy imports); --help is fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

HEAVY = ("mlflow", "zenml", "ray", "torch")

# tagops._mlflow_model is executed by MLflow when it loads a logged model, and the tagops.pipelines modules
# by ZenML; they import mlflow / zenml by design and tagops itself never imports them, so they are skipped.
EXCLUDED = (
    "tagops._mlflow_model",
    "tagops.pipelines.training",
    "tagops.pipelines.monitoring",
    "tagops.pipelines.retraining",
)

IMPORT_ALL = f"""
import json, logging, pkgutil, socket, sys, threading

def refuse(*args, **kwargs):
    raise RuntimeError("importing tagops must not open sockets or start threads")

class NoSocket(socket.socket):  # a subclass, so modules that subclass socket.socket (ssl) still import
    __init__ = refuse

socket.socket = NoSocket
threading.Thread.start = refuse

guards = []
for attempt in (lambda: socket.socket(), lambda: socket.create_connection(("127.0.0.1", 9)),
                lambda: threading.Thread(target=print).start()):
    try:
        attempt()
    except RuntimeError:
        guards.append(True)

import tagops

excluded = {EXCLUDED!r}
names = sorted(m.name for m in pkgutil.walk_packages(tagops.__path__, "tagops.") if m.name not in excluded)
for name in names:
    __import__(name)
print(json.dumps({{
    "modules": names,
    "root_handlers": len(logging.getLogger().handlers),
    "root_level": logging.getLogger().level,
    "tagops_handlers": len(logging.getLogger("tagops").handlers),
    "heavy": [m for m in {HEAVY!r} if m in sys.modules],
    "excluded_loaded": [m for m in excluded if m in sys.modules],
    "guards": guards,
}}))
"""

HELP_ONLY = """
import json, sys
from tagops.cli import main
sys.argv = ["tagops", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
heavy = ("pandas", "sklearn", "pandera", "matplotlib", "numpy")
heavy += ("mlflow", "zenml", "ray", "torch", "transformers")
heavy += ("rich",)  # Rich draws tables; help is plain text (importing Rich's renderers doubles its time)
print(json.dumps({"code": code, "heavy": [m for m in heavy if m in sys.modules]}))
"""


def isolated_env(folder: Path) -> dict[str, str]:
    """Only what Python needs, with every home-like location pointing at ``folder``."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "TAGOPS_HOME": str(folder),
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }


def run_python(code: str, folder: Path, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=folder,
        env=isolated_env(folder),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_every_module_is_inert(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    result = run_python(IMPORT_ALL, folder)
    assert result["guards"] == [True, True, True], "the socket/thread guards are not in force"
    assert {
        "tagops.cli",
        "tagops.cli.logs",
        "tagops.cli.models",
        "tagops.registry.client",
        "tagops.workloads.train",
        "tagops.data.validate",
        "tagops.models.linear",
    } <= set(result["modules"])
    assert len(result["modules"]) >= 15
    assert result["excluded_loaded"] == []
    assert result["root_handlers"] == 0, "importing configured logging"
    assert result["root_level"] == 30  # WARNING, Python's default: untouched
    assert result["tagops_handlers"] == 0
    assert result["heavy"] == []
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == []


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["data", "pull"], ["models", "list"]],
    ids=lambda command: " ".join(command) or "tagops",
)
def test_help_imports_no_heavy_library(tmp_path: Path, command: list[str]) -> None:
    result = run_python(HELP_ONLY, tmp_path, *command, "--help")
    assert result["code"] == 0
    assert result["heavy"] == []


def test_console_script_help_is_fast(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "tagops"
    if not script.is_file():
        pytest.skip(f"console script not installed at {script}")
    timings = []
    for _ in range(3):  # best of three: the 2-core CI box is noisy; a real regression is slow every time
        started = time.perf_counter()
        proc = subprocess.run(
            [str(script), "--help"],
            cwd=tmp_path,
            env=isolated_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        timings.append(time.perf_counter() - started)
        assert proc.returncode == 0, proc.stderr
        assert "predict" in proc.stdout
    assert min(timings) < 2.0, f"tagops --help took {timings} s (target 0.3 s)"
