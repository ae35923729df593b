"""Shared pieces of the serving benchmarks: a home with a champion, a server process, a load generator.

Everything listens and connects on 127.0.0.1 only; every load loop is bounded in requests and time.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MIRROR = Path(os.environ.get("TAGOPS_DATA_MIRROR") or ROOT.parent / "shared" / "datasets" / "madewithml")
#: Short: Ray's socket paths under TAGOPS_HOME/ray must stay below 108 bytes.
DEFAULT_HOME = Path("/tmp/tagops-serve-bench")


def environment(home: Path, **extra: str) -> dict[str, str]:
    """The environment of every tagops process the benchmarks start."""
    from tagops.settings import QUIET_ENVIRONMENT

    env = {**os.environ, **QUIET_ENVIRONMENT, "TAGOPS_HOME": str(home), "TAGOPS_DATA_MIRROR": str(MIRROR)}
    for key in ("MLFLOW_TRACKING_URI", "TAGOPS_MLFLOW_TRACKING_URI", "RAY_ADDRESS", "TAGOPS_RAY_ADDRESS"):
        env.pop(key, None)
    env.update(extra)
    return env


def tagops(home: Path, *args: str, timeout: float = 600) -> str:
    """Run a tagops command; its stdout (fails loudly)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tagops.cli", *args],
        env=environment(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tagops {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def ensure_models(home: Path, *, second: bool = False, family: str = "linear") -> dict[str, int]:
    """``family`` as champion in ``home``'s registry, trained once; with ``second``, a rules version too."""
    from tagops.registry.client import CHAMPION, Registry
    from tagops.settings import Settings, prepare_environment

    os.environ.update(environment(home))
    settings = Settings(home=home)
    prepare_environment(settings)
    registry = Registry(settings)
    families = {v["tags"].get("family"): v["version"] for v in reversed(registry.list_versions())}
    if family not in families:
        families[family] = json.loads(tagops(home, "train", "--model", family, timeout=1800))["version"]
    if second and "rules" not in families:
        families["rules"] = json.loads(tagops(home, "train", "--model", "rules"))["version"]
    if registry.alias_version(CHAMPION) != families[family]:
        registry.set_alias(CHAMPION, families[family])
    return {k: int(v) for k, v in families.items() if k}


def holdout_items() -> list[dict[str, str]]:
    """Real titles and descriptions to send (the holdout file of the data mirror)."""
    with (MIRROR / "holdout.csv").open(encoding="utf-8", newline="") as handle:
        return [
            {"title": row["title"], "description": row["description"] or ""} for row in csv.DictReader(handle)
        ]


@dataclass
class Server:
    """A `tagops serve` process."""

    proc: subprocess.Popen[str]
    url: str
    log: Path


@contextmanager
def serve(
    home: Path,
    engine: str,
    config: dict[str, Any],
    *,
    database: Path,
    log: Path,
    timeout: float = 300,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """Start `tagops serve` with ``config`` on a free loopback port; stop it with SIGTERM afterwards."""
    from tagops.serving.server import free_port

    port = free_port()
    config_path = log.with_suffix(".yaml")
    config_path.write_text(yaml.safe_dump({**config, "engine": engine, "host": "127.0.0.1", "port": port}))
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tagops.cli", "serve", "--config", str(config_path)],
            env=environment(home, TAGOPS_SERVE_DATABASE_URL=f"sqlite:///{database}", **(env or {})),
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + timeout
            line = ""
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if line.startswith("serving ") or proc.poll() is not None:
                    break
            if not line.startswith("serving "):
                raise RuntimeError(f"{engine} server did not start; see {log}")
            yield Server(proc, f"http://127.0.0.1:{port}", log)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(90)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(30)


@dataclass
class LoadResult:
    """Latencies and outcomes of one load run."""

    concurrency: int
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, what)
    seconds: float = 0.0
    started_at: float = 0.0  # time.perf_counter() when the run began
    bodies: list[Any] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def errors(self) -> int:
        return len(self.failures)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": round(percentile(ordered, 50), 2),
            "p99_ms": round(percentile(ordered, 99), 2),
            "mean_ms": round(statistics.fmean(ordered), 2) if ordered else 0.0,
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "statuses": dict(self.statuses),
        }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def request_bodies(items: list[dict[str, str]], per_request: int = 1) -> list[bytes]:
    """Pre-encoded /v1/predict bodies cycling through ``items``."""
    return [
        json.dumps({"items": [items[(i + k) % len(items)] for k in range(per_request)]}).encode()
        for i in range(len(items))
    ]


async def _load(
    url: str,
    bodies: list[bytes],
    *,
    concurrency: int,
    requests: int,
    max_seconds: float,
    keep_bodies: bool,
) -> LoadResult:
    import aiohttp

    result = LoadResult(concurrency)
    counter = itertools.count()
    started = result.started_at = time.perf_counter()
    deadline = started + max_seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while True:
                index = next(counter)
                if index >= requests or time.perf_counter() > deadline:
                    return
                sent = time.perf_counter()
                try:
                    async with session.post(
                        url, data=bodies[index % len(bodies)], headers=headers
                    ) as response:
                        payload = await response.read()
                        status = str(response.status)
                except Exception as error:  # connection reset, timeout: a failed request
                    payload, status = b"", type(error).__name__
                elapsed = time.perf_counter() - sent
                result.latencies_ms.append(elapsed * 1000)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if status != "200":
                    result.failures.append((sent - started, f"{status} {payload[:200]!r}"))
                elif keep_bodies:
                    result.bodies.append(json.loads(payload))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - started
    return result


def run_load(
    url: str,
    bodies: list[bytes],
    *,
    concurrency: int,
    requests: int,
    max_seconds: float = 300,
    keep_bodies: bool = False,
) -> LoadResult:
    """POST ``requests`` bodies to ``url`` from ``concurrency`` connections (bounded by ``max_seconds``)."""
    return asyncio.run(
        _load(
            url,
            bodies,
            concurrency=concurrency,
            requests=requests,
            max_seconds=max_seconds,
            keep_bodies=keep_bodies,
        )
    )


def run_raw_batched(predictor: Any, items: list[dict[str, str]], batch_size: int, seconds: float) -> float:
    """Items per second of ``predictor.predict`` on batches of ``batch_size`` (at least ``seconds``)."""
    done, started, position = 0, time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        batch = [items[(position + i) % len(items)] for i in range(batch_size)]
        position += batch_size
        predictor.predict([b["title"] for b in batch], [b["description"] for b in batch])
        done += batch_size
    return done / (time.perf_counter() - started)


def run_raw(predictor: Any, items: list[dict[str, str]], concurrency: int, requests: int) -> LoadResult:
    """``requests`` single-item predict calls from ``concurrency`` threads."""
    result = LoadResult(concurrency)

    def call(index: int) -> float:
        item = items[index % len(items)]
        started = time.perf_counter()
        predictor.predict([item["title"]], [item["description"]])
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    if concurrency == 1:
        latencies = [call(i) for i in range(requests)]
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = list(pool.map(call, range(requests)))
    result.seconds = time.perf_counter() - started
    result.latencies_ms = latencies
    result.statuses = {"ok": requests}
    return result


def machine() -> dict[str, Any]:
    """Where the figures were measured, and how busy the machine was."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write results as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned text table."""
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
