"""Overload: far more concurrent clients than a server works on at once get 200 or 503, and memory stays put.

    python benchmarks/serve_overload.py [--home /tmp/tagops-serve-bench] [--engine ray] [--engine uvicorn]
        [--concurrency 256] [--seconds 30] [--output benchmarks/results/serve_overload.json]

Starts `tagops serve` with its default configuration (``max_ongoing_requests`` 64) and the linear
champion, measures the server's resident memory (its whole process tree: Ray's replica and proxy
processes too) when idle, then runs ``--concurrency`` clients sending single-item predictions as fast as
they are answered for ``--seconds``, sampling memory every 0.5 s. Bars: every answer is a 200 or a 503
(no reset, no timeout, no other status), and the peak resident memory stays within 1.5 times the idle
value. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from serving_common import (
    DEFAULT_HOME,
    RESULTS,
    ensure_models,
    holdout_items,
    machine,
    print_table,
    request_bodies,
    run_load,
    serve,
    write_json,
)
from stamp import stamp


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    import psutil

    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # ended meanwhile
            total += process.memory_info().rss
    return total


def measure(engine: str, home: Path, workdir: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    from tagops.config import ServeConfig

    config = ServeConfig().model_dump(mode="json", exclude={"database_url"})
    bodies = request_bodies(holdout_items())
    with serve(
        home, engine, config, database=workdir / f"{engine}.db", log=workdir / f"{engine}.log"
    ) as server:
        url = f"{server.url}/v1/predict"
        run_load(url, bodies, concurrency=8, requests=400)  # warm up
        time.sleep(2)
        idle = tree_rss(server.proc.pid)
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(tree_rss(server.proc.pid))
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load = run_load(url, bodies, concurrency=concurrency, requests=10**9, max_seconds=seconds)
        stop.set()
        sampler.join(10)
        after = run_load(url, bodies, concurrency=1, requests=50)  # still answering afterwards
    statuses = dict(load.statuses)
    peak = max(samples, default=idle)
    row = {
        "engine": engine,
        "concurrency": concurrency,
        "seconds": round(load.seconds, 1),
        "requests": load.requests,
        "statuses": statuses,
        "answered_200": statuses.get("200", 0),
        "answered_503": statuses.get("503", 0),
        "other": sum(v for k, v in statuses.items() if k not in ("200", "503")),
        "p50_ms": load.summary()["p50_ms"],
        "p99_ms": load.summary()["p99_ms"],
        "idle_rss_mb": round(idle / 2**20, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "rss_ratio": round(peak / idle, 3),
        "after_errors": after.errors,
    }
    row["pass"] = row["other"] == 0 and row["rss_ratio"] <= 1.5 and row["after_errors"] == 0
    print(
        f"{engine}: {statuses}, p99 {row['p99_ms']} ms, memory {row['idle_rss_mb']} -> "
        f"{row['peak_rss_mb']} MB (x{row['rss_ratio']}) {'ok' if row['pass'] else 'FAIL'}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--engine", action="append", choices=["ray", "uvicorn"])
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "serve_overload.json")
    args = parser.parse_args()

    versions = ensure_models(args.home)
    workdir = Path(tempfile.mkdtemp(prefix="overload-", dir=args.home))
    before = machine()
    rows = [
        measure(engine, args.home, workdir, args.concurrency, args.seconds)
        for engine in args.engine or ["ray", "uvicorn"]
    ]
    print()
    columns = ["engine", "concurrency", "requests", "answered_200", "answered_503", "other"]
    print_table(rows, [*columns, "p99_ms", "idle_rss_mb", "peak_rss_mb", "rss_ratio", "pass"])
    report = {
        "benchmark": "serve_overload",
        "versions": versions,
        "bars": {"statuses": "200 or 503 only", "rss_ratio": 1.5},
        "rows": rows,
        "pass": all(r["pass"] for r in rows),
        "machine_before": before,
        "machine_after": machine(),
    }
    report.update(stamp())
    write_json(args.output, report)
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
