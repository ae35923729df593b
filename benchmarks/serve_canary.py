"""Canary rollout under load: the share a weight routes, and abort and promotion with no failed request.

    python benchmarks/serve_canary.py [--home /tmp/tagops-serve-bench] [--engines uvicorn,ray]
        [--requests 2000] [--weight 10] [--concurrency 8] [--output benchmarks/results/serve_canary.json]

For each engine, one `tagops serve` on loopback (Ray Serve: two replicas of one CPU each), the linear
champion, and the rules version as the canary:

1. ``POST /v1/admin/rollout`` at ``--weight``; ``--requests`` distinct two-item requests (real titles
   and descriptions from the data mirror) at ``--concurrency``: the share the canary answered (each
   answer names its model), against weight ± 3 points.
   Then 200 of them sent twice more, one at a time: how many answers changed model (sticky: none).
2. Load for 8 s while the rollout is aborted (``DELETE /v1/admin/rollout``) after 3 s: failed requests,
   and the version answering afterwards.
3. The rollout again, load for 8 s while the canary is promoted after 3 s (the champion alias moves to
   its version, then ``POST /v1/admin/reload``, which keeps the warm canary as the new champion): failed
   requests, and the version answering afterwards. The champion alias is put back afterwards.

The promotion here moves the alias itself, without ``tagops rollout promote``'s holdout gate (which the
rules version would not pass): it measures the serving side. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from serving_common import (
    DEFAULT_HOME,
    MIRROR,
    RESULTS,
    LoadResult,
    ensure_models,
    machine,
    print_table,
    run_load,
    serve,
    write_json,
)
from stamp import stamp


def http_json(method: str, url: str, headers: dict[str, str], body: Any = None, timeout: float = 120) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={**headers, "content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def distinct_bodies(count: int) -> list[bytes]:
    """``count`` different two-item requests made of the mirror's projects."""
    items = []
    for name in ("dataset.csv", "holdout.csv"):
        with (MIRROR / name).open(encoding="utf-8", newline="") as handle:
            items += [
                {"title": r["title"], "description": r["description"] or ""} for r in csv.DictReader(handle)
            ]
    n = len(items)
    return [json.dumps({"items": [items[i % n], items[(7 * i + 3) % n]]}).encode() for i in range(count)]


def versions_of(result: LoadResult) -> list[int]:
    return [int(body["model"]["version"]) for body in result.bodies]


def under_load(url: str, bodies: list[bytes], concurrency: int, action: Any) -> tuple[LoadResult, Any]:
    """Load for 8 s; ``action()`` runs after 3 s; the load's result and what ``action`` returned."""
    out: list[LoadResult] = []
    thread = threading.Thread(
        target=lambda: out.append(
            run_load(url, bodies, concurrency=concurrency, requests=10**9, max_seconds=8, keep_bodies=True)
        )
    )
    thread.start()
    time.sleep(3)
    answer = action()
    thread.join()
    return out[0], answer


def after(url: str, bodies: list[bytes]) -> list[int]:
    return sorted(
        {
            int(b["model"]["version"])
            for b in run_load(url, bodies[:100], concurrency=4, requests=100, keep_bodies=True).bodies
        }
    )


def measure(engine: str, args: argparse.Namespace, versions: dict[str, int]) -> dict[str, Any]:
    from tagops.config import ServeConfig
    from tagops.predlog.log import PredictionLog
    from tagops.registry.client import CHAMPION, Registry
    from tagops.serving.keys import KeyStore
    from tagops.settings import Settings

    registry = Registry(Settings(home=args.home))
    workdir = Path(tempfile.mkdtemp(prefix=f"canary-{engine}-", dir=args.home))
    database = workdir / "predictions.db"
    log = PredictionLog(f"sqlite:///{database}")
    log.create_tables()
    _, token = KeyStore(log.engine).create("benchmark", "admin")
    log.dispose()
    admin = {"Authorization": f"Bearer {token}"}
    options = {"num_replicas": 2, "num_cpus": 1.0} if engine == "ray" else {}
    config = ServeConfig(**options).model_dump(mode="json", exclude={"database_url"})
    canary_uri = f"models:/tagops/{versions['rules']}"
    bodies = distinct_bodies(args.requests)
    row: dict[str, Any] = {"engine": engine, "weight": args.weight, "requests": args.requests}
    try:
        with serve(args.home, engine, config, database=database, log=workdir / f"{engine}.log") as server:
            predict = f"{server.url}/v1/predict"
            rollout = f"{server.url}/v1/admin/rollout"
            http_json("POST", rollout, admin, {"model_uri": canary_uri, "weight": args.weight})
            time.sleep(2.0)  # every replica follows within a sync interval
            first = run_load(
                predict, bodies, concurrency=args.concurrency, requests=args.requests, keep_bodies=True
            )
            answered = versions_of(first)
            share = answered.count(versions["rules"]) / max(1, len(answered))
            changed = sum(
                answer_version(predict, body) != answer_version(predict, body) for body in bodies[:200]
            )
            row.update(
                {
                    "errors": first.errors,
                    "canary_share": round(share, 4),
                    "share_pass": abs(share * 100 - args.weight) <= 3,
                    "sticky_changed": changed,
                }
            )
            load, ended = under_load(
                predict, bodies, args.concurrency, lambda: http_json("DELETE", rollout, admin)
            )
            row["abort"] = {
                "requests": load.requests,
                "failed": load.errors,
                "state": ended["state"],
                "versions_after": after(predict, bodies),
            }
            http_json("POST", rollout, admin, {"model_uri": canary_uri, "weight": args.weight})
            time.sleep(2.0)

            def promote() -> Any:
                registry.set_alias(CHAMPION, versions["rules"])
                return http_json("POST", f"{server.url}/v1/admin/reload", admin)

            load, reloaded = under_load(predict, bodies, args.concurrency, promote)
            row["promote"] = {
                "requests": load.requests,
                "failed": load.errors,
                "reload_current": reloaded["current"]["version"],
                "versions_after": after(predict, bodies),
                "state": http_json("GET", rollout, admin)["state"],
            }
    finally:
        registry.set_alias(CHAMPION, versions["linear"])
    row["pass"] = (
        row.get("share_pass", False)
        and row.get("errors", 1) == 0
        and row.get("sticky_changed", 1) == 0
        and row["abort"]["failed"] == 0
        and row["abort"]["versions_after"] == [versions["linear"]]
        and row["promote"]["failed"] == 0
        and row["promote"]["versions_after"] == [versions["rules"]]
    )
    return row


def answer_version(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(json.loads(response.read())["model"]["version"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--engines", default="uvicorn,ray")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--weight", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--output", type=Path, default=RESULTS / "serve_canary.json")
    args = parser.parse_args()
    versions = ensure_models(args.home, second=True)
    before = machine()
    rows = [measure(engine, args, versions) for engine in args.engines.split(",")]
    print_table(
        [
            {
                "engine": r["engine"],
                "share": f"{r['canary_share']:.1%} (weight {r['weight']:g})",
                "sticky changed": r["sticky_changed"],
                "abort failed": f"{r['abort']['failed']}/{r['abort']['requests']}",
                "promote failed": f"{r['promote']['failed']}/{r['promote']['requests']}",
                "after": f"{r['abort']['versions_after']} / {r['promote']['versions_after']}",
                "pass": r["pass"],
            }
            for r in rows
        ],
        ["engine", "share", "sticky changed", "abort failed", "promote failed", "after", "pass"],
    )
    write_json(
        args.output,
        {"benchmark": "serve_canary", **stamp(), "machine": before, "versions": versions, "engines": rows},
    )


if __name__ == "__main__":
    main()
