"""Ray Serve under load: the prediction log keeps every row, a killed replica, a reload with no failure.

    python benchmarks/serve_resilience.py [--home /tmp/tagops-serve-bench] [--requests 10000]
        [--concurrency 32] [--kill-seconds 30] [--output benchmarks/results/serve_resilience.json]

One `tagops serve` (Ray Serve, two replicas of one CPU each, on loopback), three phases:

1. ``--requests`` single-item predictions at ``--concurrency``: errors, and the rows the prediction log
   holds afterwards (a fresh database: it must hold exactly one row per request).
2. Load for ``--kill-seconds`` while one replica process is killed with SIGKILL after a third of it: the
   share of failed requests, how long failures lasted, and when the replacement replica was serving.
3. Load while the champion alias moves to another version and ``POST /v1/admin/reload`` runs: failed
   requests, and the version ``GET /v1/model`` reports afterwards (20 calls, any replica).
4. After shutdown: one row in the log per successful request of all phases. The killed replica's last
   rows reach it from its journal, written by the replica that replaces it.

Trains a linear champion and a rules version into ``--home`` on first use; the champion alias is put back
afterwards. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from serving_common import (
    DEFAULT_HOME,
    RESULTS,
    LoadResult,
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


def http_json(method: str, url: str, headers: dict[str, str] | None = None, timeout: float = 120) -> Any:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for_rows(reader: Any, expected: int, timeout: float = 60) -> int:
    """The log's row count once it reaches ``expected`` or stops growing (bounded by ``timeout``)."""
    deadline = time.monotonic() + timeout
    count, last_change, previous = 0, time.monotonic(), -1
    while time.monotonic() < deadline:
        count = reader.count_predictions()
        if count >= expected:
            return int(count)
        if count != previous:
            previous, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > 10:
            break
        time.sleep(0.25)
    return int(count)


def background_load(
    url: str, bodies: list[bytes], **kwargs: Any
) -> tuple[threading.Thread, list[LoadResult]]:
    out: list[LoadResult] = []
    thread = threading.Thread(target=lambda: out.append(run_load(url, bodies, **kwargs)))
    thread.start()
    return thread, out


def kill_a_replica(state: Any, max_age_s: float = 3.0) -> tuple[Any, set[str]]:
    """SIGKILL the process of one live replica (checked to be a Ray Serve replica first)."""
    import psutil

    live = state.live_replicas(None, max_age_s)
    for replica in live:
        process = psutil.Process(replica.pid)
        if "ServeReplica" in " ".join(process.cmdline()) + process.name():
            os.kill(replica.pid, signal.SIGKILL)
            return replica, {r.replica_id for r in live}
    raise RuntimeError(f"no live Ray Serve replica process among {live}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kill-seconds", type=float, default=30.0)
    parser.add_argument("--reload-seconds", type=float, default=20.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "serve_resilience.json")
    args = parser.parse_args()

    from tagops.config import ServeConfig
    from tagops.predlog.log import PredictionLog
    from tagops.registry.client import CHAMPION, Registry
    from tagops.serving.keys import KeyStore
    from tagops.serving.state import ServingState
    from tagops.settings import Settings

    versions = ensure_models(args.home, second=True)
    registry = Registry(Settings(home=args.home))
    workdir = Path(tempfile.mkdtemp(prefix="resilience-", dir=args.home))
    database = workdir / "predictions.db"
    log = PredictionLog(f"sqlite:///{database}")
    log.create_tables()
    state = ServingState(log.engine)
    state.create_tables()
    _, token = KeyStore(log.engine).create("benchmark", "admin")
    admin = {"Authorization": f"Bearer {token}"}
    config = ServeConfig(num_replicas=2, num_cpus=1.0).model_dump(mode="json", exclude={"database_url"})
    bodies = request_bodies(holdout_items())
    before = machine()
    report: dict[str, Any] = {"benchmark": "serve_resilience", "config": config, "versions": versions}
    successes = 0

    try:
        with serve(args.home, "ray", config, database=database, log=workdir / "ray.log") as server:
            url = f"{server.url}/v1/predict"

            # 1 -------------------------------------------------------------- 10,000 requests, the log
            flood = run_load(
                url, bodies, concurrency=args.concurrency, requests=args.requests, max_seconds=900
            )
            successes += flood.requests - flood.errors
            rows = wait_for_rows(log.reader, args.requests)
            report["log"] = {
                **flood.summary(),
                "rows_in_log": rows,
                "pass": flood.errors == 0 and rows == args.requests,
            }
            print(f"1. {flood.requests} requests, {flood.errors} errors; {rows} rows in the log", flush=True)

            # 2 ----------------------------------------------------------------- kill one replica
            thread, out = background_load(
                url, bodies, concurrency=args.concurrency, requests=10**9, max_seconds=args.kill_seconds
            )
            time.sleep(args.kill_seconds / 3)
            killed, before_ids = kill_a_replica(state)
            killed_at = time.perf_counter()
            print(f"2. killed replica {killed.replica_id} (pid {killed.pid})", flush=True)
            replaced_s = None
            while time.perf_counter() - killed_at < 120:
                new = [r for r in state.live_replicas(None, 3.0) if r.replica_id not in before_ids]
                if new:
                    replaced_s = time.perf_counter() - killed_at
                    break
                time.sleep(0.1)
            thread.join()
            kill = out[0]
            successes += kill.requests - kill.errors
            after_kill = [t - (killed_at - kill.started_at) for t, _ in kill.failures]
            failed_share = kill.errors / max(1, kill.requests)
            report["kill"] = {
                **kill.summary(),
                "failed_share": round(failed_share, 5),
                "first_failure_after_kill_s": round(min(after_kill), 3) if after_kill else None,
                "last_failure_after_kill_s": round(max(after_kill), 3) if after_kill else None,
                "replacement_serving_after_s": round(replaced_s, 2) if replaced_s is not None else None,
                "failures": [f for _, f in kill.failures[:10]],
                "pass": failed_share <= 0.01
                and (max(after_kill) if after_kill else 0) <= 10
                and replaced_s is not None
                and replaced_s <= 10,
            }
            print(
                f"   {kill.requests} requests, {kill.errors} failed ({failed_share:.3%}); "
                f"replacement serving after {replaced_s} s",
                flush=True,
            )

            # 3 ------------------------------------------------------------------ reload under load
            wait_until_replicas(state, 2)
            registry.set_alias(CHAMPION, versions["rules"])
            thread, out = background_load(
                url,
                bodies,
                concurrency=args.concurrency,
                requests=10**9,
                max_seconds=args.reload_seconds,
                keep_bodies=True,
            )
            time.sleep(args.reload_seconds / 4)
            started = time.perf_counter()
            reload = http_json("POST", f"{server.url}/v1/admin/reload", admin)
            reload_s = time.perf_counter() - started
            seen = [http_json("GET", f"{server.url}/v1/model")["version"] for _ in range(20)]
            thread.join()
            swap = out[0]
            successes += swap.requests - swap.errors
            answered = {}
            for body in swap.bodies:
                answered[body["model"]["version"]] = answered.get(body["model"]["version"], 0) + 1
            report["reload"] = {
                **swap.summary(),
                "reload_seconds": round(reload_s, 2),
                "reload_response": reload,
                "versions_after": sorted(set(seen)),
                "answers_by_version": answered,
                "failures": [f for _, f in swap.failures[:10]],
                "pass": swap.errors == 0 and set(seen) == {versions["rules"]},
            }
            print(
                f"3. reload in {reload_s:.2f} s under load: {swap.requests} requests, {swap.errors} failed; "
                f"/v1/model afterwards: {sorted(set(seen))}",
                flush=True,
            )
    finally:
        registry.set_alias(CHAMPION, versions["linear"])

    # Every answered prediction must be in the log; a request whose replica was killed after predicting
    # it may be there too (its row was journaled, its answer lost), so at most the failed ones more.
    failed = sum(report[phase]["errors"] for phase in ("log", "kill", "reload"))
    rows = log.reader.count_predictions()
    report["log_after_shutdown"] = {
        "successful_requests": successes,
        "failed_requests": failed,
        "rows": rows,
        "pass": successes <= rows <= successes + failed,
    }
    report["machine_before"], report["machine_after"] = before, machine()
    report.update(stamp())
    rows_table = [
        {
            "check": "10k requests: errors / rows",
            "value": f"{report['log']['errors']} / {report['log']['rows_in_log']}",
            "pass": report["log"]["pass"],
        },
        {
            "check": "kill replica: failed share",
            "value": f"{report['kill']['failed_share']:.3%}",
            "pass": report["kill"]["failed_share"] <= 0.01,
        },
        {
            "check": "kill replica: last failure after kill (s)",
            "value": report["kill"]["last_failure_after_kill_s"],
            "pass": "",
        },
        {
            "check": "kill replica: replacement serving after (s)",
            "value": report["kill"]["replacement_serving_after_s"],
            "pass": report["kill"]["pass"],
        },
        {
            "check": "reload under load: failed requests",
            "value": report["reload"]["errors"],
            "pass": report["reload"]["errors"] == 0,
        },
        {
            "check": "reload: /v1/model afterwards",
            "value": report["reload"]["versions_after"],
            "pass": report["reload"]["pass"],
        },
        {
            "check": "log rows after shutdown / successes (+ failed)",
            "value": f"{rows} / {successes} (+ {failed})",
            "pass": report["log_after_shutdown"]["pass"],
        },
    ]
    print()
    print_table(rows_table, ["check", "value", "pass"])
    write_json(args.output, report)
    print(f"\n{args.output}")


def wait_until_replicas(state: Any, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(state.live_replicas(None, 3.0)) < count and time.monotonic() < deadline:
        time.sleep(0.2)


if __name__ == "__main__":
    main()
