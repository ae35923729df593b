"""What a user gets: `make run`'s champion served with default flags, beside `mlflow models serve`.

    python benchmarks/serve_defaults.py [--home .tagops] [--rounds 3] [--engines uvicorn ray mlflow]
                                        [--output benchmarks/results/serve-defaults.json]
    python benchmarks/serve.py --as-built ...      # the same

Nothing is trained: the registry in ``--home`` (``make run``'s, ``./.tagops`` by default) must have a
champion. Each round starts every server in turn, one at a time, from a warm model cache: ``tagops
serve`` (Ray Serve), ``tagops serve --engine uvicorn`` (no flags but a free port and, for uvicorn, the
engine) and ``mlflow models serve -m models:/tagops@champion --env-manager local``. For each it measures
the cold start (process launch to the first successful readiness probe: ``/readyz``, MLflow's ``/ping``),
then in alternating blocks with the raw in-process predictor (same background load): the p50 of single-item
requests from one client, and requests/s of single-item requests from 32 clients next to the raw
predictor's items/s on batches of 32 items (the largest batch 32 such clients can make). Figures are the
median over rounds, with min and max. Prints a table and writes JSON.

Bars: on both engines, p50 at concurrency 1 <= 1.3 x raw and requests/s at concurrency 32 >= 0.8 x raw;
requests/s at concurrency 32 >= 2.5 x MLflow's, and p50 at concurrency 1 no worse than MLflow's; cold start
<= 10 s on Ray Serve and <= 5 s on uvicorn.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from serving_common import (
    RESULTS,
    environment,
    holdout_items,
    machine,
    percentile,
    print_table,
    request_bodies,
    run_load,
    run_raw,
    run_raw_batched,
    write_json,
)
from stamp import stamp

CONCURRENCY = 32
BARS = {
    "p50_ratio_to_raw": 1.3,
    "throughput_ratio_to_raw": 0.8,
    "throughput_ratio_to_mlflow": 2.5,
    "cold_start_s": {"ray": 10.0, "uvicorn": 5.0},
}


@contextmanager
def start(engine: str, home: Path, workdir: Path) -> Iterator[tuple[str, float, str]]:
    """Start ``engine`` with its defaults on a free port; yields (predict URL, cold start s, body format)."""
    from tagops.serving.server import free_port

    port = free_port()
    env = environment(home, TAGOPS_SERVE_DATABASE_URL=f"sqlite:///{workdir / f'{engine}.db'}")
    if engine == "mlflow":
        from tagops.settings import Settings

        env["MLFLOW_TRACKING_URI"] = Settings(home=home).tracking_uri
        # MLflow starts its scoring server as `uvicorn` from PATH: this interpreter's, even unactivated.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        command = [
            *(str(Path(sys.executable).with_name("mlflow")), "models", "serve"),
            *("-m", "models:/tagops@champion", "--env-manager", "local", "-h", "127.0.0.1"),
            *("-p", str(port), "-w", "1"),
        ]
        ready, predict = "/ping", "/invocations"
    else:
        command = [sys.executable, "-m", "tagops.cli", "serve", "--port", str(port)]
        command += ["--engine", "uvicorn"] if engine == "uvicorn" else []
        ready, predict = "/readyz", "/v1/predict"
    url = f"http://127.0.0.1:{port}"
    log = (workdir / f"{engine}.log").open("a")
    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log, text=True, start_new_session=True)
    try:
        cold = None
        with httpx.Client(timeout=2) as http:
            while time.perf_counter() - started < 300 and proc.poll() is None:
                try:
                    if http.get(url + ready).status_code == 200:
                        cold = time.perf_counter() - started
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        if cold is None:
            raise RuntimeError(f"{engine} did not become ready; see {workdir / f'{engine}.log'}")
        yield url + predict, cold, "mlflow" if engine == "mlflow" else "tagops"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
        log.close()


def mlflow_bodies(items: list[dict[str, str]]) -> list[bytes]:
    """One item per request in MLflow's scoring format."""
    return [json.dumps({"dataframe_records": [item]}).encode() for item in items]


def raw_p50(predictor: Any, items: list[dict[str, str]], requests: int) -> float:
    """p50 ms of single-item ``predict`` calls, one after another."""
    return percentile(sorted(run_raw(predictor, items, 1, requests).latencies_ms), 50)


def measure(
    engine: str,
    home: Path,
    workdir: Path,
    predictor: Any,
    items: list[dict[str, str]],
    blocks: int,
) -> dict[str, Any]:
    """One start of ``engine``: cold start, then ``blocks`` alternating blocks against the raw predictor."""
    bodies = mlflow_bodies(items) if engine == "mlflow" else request_bodies(items)
    with start(engine, home, workdir) as (url, cold, _):
        warm = run_load(url, bodies, concurrency=8, requests=200)
        assert warm.errors == 0, warm.failures[:3]
        served_c1: list[float] = []
        raw_c1: list[float] = []
        served_rps: list[float] = []
        raw_rps: list[float] = []
        for _ in range(blocks):
            raw_c1.append(raw_p50(predictor, items, 100))
            one = run_load(url, bodies, concurrency=1, requests=100)
            assert one.errors == 0, one.failures[:3]
            served_c1.append(percentile(sorted(one.latencies_ms), 50))
            raw_rps.append(run_raw_batched(predictor, items, CONCURRENCY, 3.0))
            many = run_load(url, bodies, concurrency=CONCURRENCY, requests=max(100, int(raw_rps[-1] * 3)))
            assert many.errors == 0, many.failures[:3]
            served_rps.append(many.requests / many.seconds)
    return {
        "cold_start_s": cold,
        "p50_ms": statistics.median(served_c1),
        "raw_p50_ms": statistics.median(raw_c1),
        "requests_per_s": statistics.median(served_rps),
        "raw_items_per_s": statistics.median(raw_rps),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median, min and max over rounds of each figure, and the ratios to raw from each round."""
    figures = {
        **{key: [run[key] for run in runs] for key in runs[0]},
        "p50_ratio_to_raw": [run["p50_ms"] / run["raw_p50_ms"] for run in runs],
        "throughput_ratio_to_raw": [run["requests_per_s"] / run["raw_items_per_s"] for run in runs],
    }
    return {
        key: {
            "median": round(statistics.median(values), 3),
            "min": round(min(values), 3),
            "max": round(max(values), 3),
        }
        for key, values in figures.items()
    }


def bars(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each bar with the measured median and whether it is met."""
    result: dict[str, Any] = {}
    mlflow = summary.get("mlflow")
    for engine in ("ray", "uvicorn"):
        if engine not in summary:
            continue
        figures = {key: value["median"] for key, value in summary[engine].items()}
        checks = {
            "p50_ratio_to_raw": (figures["p50_ratio_to_raw"], "<=", BARS["p50_ratio_to_raw"]),
            "throughput_ratio_to_raw": (
                figures["throughput_ratio_to_raw"],
                ">=",
                BARS["throughput_ratio_to_raw"],
            ),
            "cold_start_s": (figures["cold_start_s"], "<=", BARS["cold_start_s"][engine]),
        }
        if mlflow is not None:
            checks["throughput_ratio_to_mlflow"] = (
                figures["requests_per_s"] / mlflow["requests_per_s"]["median"],
                ">=",
                BARS["throughput_ratio_to_mlflow"],
            )
            checks["p50_ms_vs_mlflow"] = (figures["p50_ms"], "<=", mlflow["p50_ms"]["median"])
        result[engine] = {
            name: {
                "value": round(value, 3),
                "bar": f"{op} {limit:g}",
                "met": value <= limit if op == "<=" else value >= limit,
            }
            for name, (value, op, limit) in checks.items()
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("TAGOPS_HOME", ".tagops")))
    parser.add_argument("--rounds", type=int, default=3, help="Starts of each server (interleaved).")
    parser.add_argument("--blocks", type=int, default=2, help="Alternating blocks per start.")
    parser.add_argument(
        "--engines", nargs="+", default=["uvicorn", "ray", "mlflow"], choices=["uvicorn", "ray", "mlflow"]
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "serve-defaults.json")
    args = parser.parse_args(argv)
    home = args.home.resolve()

    from tagops.serving.loader import RegistryModelLoader
    from tagops.settings import Settings, prepare_environment

    os.environ.update(environment(home))
    settings = Settings(home=home)
    prepare_environment(settings)
    predictor = RegistryModelLoader(settings, threshold=None).load("models:/tagops@champion")
    described = predictor.describe()
    items = holdout_items()
    raw_p50(predictor, items, 50)  # warm-up
    workdir = Path(tempfile.mkdtemp(prefix="serve-defaults-"))
    before = machine()
    runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in args.engines}
    for round_ in range(args.rounds):
        for engine in args.engines:
            runs[engine].append(measure(engine, home, workdir, predictor, items, args.blocks))
            figures = {k: round(v, 2) for k, v in runs[engine][-1].items()}
            print(f"round {round_ + 1} {engine}: {figures}", flush=True)

    summary = {engine: summarize(each) for engine, each in runs.items()}
    rows = [
        {
            "server": engine,
            **{
                key: f"{value['median']:g} ({value['min']:g}-{value['max']:g})"
                for key, value in figures.items()
            },
        }
        for engine, figures in summary.items()
    ]
    print()
    print_table(
        rows,
        [
            "server",
            "cold_start_s",
            "p50_ms",
            "raw_p50_ms",
            "p50_ratio_to_raw",
            "requests_per_s",
            "raw_items_per_s",
            "throughput_ratio_to_raw",
        ],
    )
    verdict = bars(summary)
    for engine, checks in verdict.items():
        for name, check in checks.items():
            met = "met" if check["met"] else "MISSED"
            print(f"{engine} {name}: {check['value']} (bar {check['bar']}): {met}")
    write_json(
        args.output,
        {
            "benchmark": "serve-defaults",
            "model": {
                "uri": "models:/tagops@champion",
                "version": described.get("version"),
                "family": described.get("family"),
                "members": described.get("members", []),
            },
            "rounds": args.rounds,
            "blocks_per_start": args.blocks,
            "concurrency": CONCURRENCY,
            "machine_before": before,
            "machine_after": machine(),
            "runs": runs,
            "summary": summary,
            "bar": verdict,
            "logs": str(workdir),
            **stamp(),
        },
    )
    print(f"\n{args.output}")


if __name__ == "__main__":
    main()
