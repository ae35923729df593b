"""When, how and where a benchmark result was measured: stamped into every results JSON.

``docs/performance.md`` (``benchmarks/report.py``) prints these next to the figures, so a reader can
rerun the exact command and judge the machine the figures come from.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def processor() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def command(argv: list[str] | None = None) -> str:
    """The command line that ran the benchmark, with the script path relative to the repository."""
    args = list(sys.argv if argv is None else argv)
    script = Path(args[0]).resolve() if args else None
    if script is not None and script.is_relative_to(ROOT):
        args[0] = str(script.relative_to(ROOT))
    return shlex.join(["python", *args])


def stamp(argv: list[str] | None = None) -> dict[str, Any]:
    """``measured_at`` (UTC, ISO 8601), ``command`` and ``machine`` for a results JSON."""
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command(argv),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": processor(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
    }
