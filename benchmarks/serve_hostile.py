"""Worst-case input at every limit: cost per byte, and whether other clients keep being answered.

    python benchmarks/serve_hostile.py [--home /tmp/tagops-serve-bench] [--engine ray] [--engine uvicorn]
        [--family linear] [--rounds 3] [--block-seconds 4]
        [--output benchmarks/results/serve_hostile.json]

Starts `tagops serve` with its default configuration (the request limits of ``configs/serve.yaml``: 64
items, 10,000 characters per field, 1 MiB per body) and sends bodies that fill those limits with text
built to be expensive: one long run of letters, ``a://`` repeated (a URL scheme that never ends), thousands
of URLs, runs of scheme characters (``a.a.a.``), a character that NFKC normalisation expands eighteenfold
(U+FDFA), and, for reference, ordinary project text at the same size.

For each kind, in interleaved blocks of ``--block-seconds``:

* a quiet block: c=8 ordinary single-item predictions and ``/healthz`` polled every 50 ms;
* a hostile block: the same, while the 1 MiB body is sent again and again from one more client.

Reported per kind: the hostile request's latency and status, its cost per byte next to ordinary text's,
the slowest ``/healthz`` answer during it, and the p99 of ordinary predictions during it against the quiet
blocks' p99. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from serving_common import (
    DEFAULT_HOME,
    RESULTS,
    ensure_models,
    holdout_items,
    machine,
    percentile,
    print_table,
    request_bodies,
    run_load,
    serve,
    write_json,
)
from stamp import stamp

#: Worst-case text by kind: a unit repeated to fill a field.
KINDS = {
    "ordinary": None,  # holdout text repeated (the reference cost per byte)
    "letter run": "a",
    "endless scheme": "a://",
    "many URLs": "https://example.com/x ",
    "scheme characters": "a.",
    "NFKC x18 (U+FDFA)": "\ufdfa",
}


def field(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def hostile_body(kind: str, *, max_items: int, max_text_length: int, max_body_bytes: int) -> bytes:
    """The largest body of ``kind`` within the limits: items of full-length fields, up to the byte limit."""
    unit = KINDS[kind]
    if unit is None:
        ordinary = " ".join(f"{i['title']} {i['description']}" for i in holdout_items()[:200])
        text = field(ordinary, max_text_length)
    else:
        text = field(unit, max_text_length)
    items: list[dict[str, str]] = []
    body = b""
    while len(items) < max_items:
        candidate = json.dumps({"items": [*items, {"title": text, "description": text}]}, ensure_ascii=False)
        if len(candidate.encode()) > max_body_bytes:
            break
        items.append({"title": text, "description": text})
        body = candidate.encode()
    if not items:  # one item with both fields is already over the byte limit: shorten the description
        raise ValueError(f"{kind}: one item does not fit in {max_body_bytes} bytes")
    return body


class Poller(threading.Thread):
    """GET ``url`` every ``period`` seconds until stopped; (time sent, seconds, status) per call."""

    def __init__(self, url: str, period: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.url, self.period = url, period
        self.calls: list[tuple[float, float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.perf_counter()
            status = send(self.url, None, timeout=30)
            self.calls.append((sent, time.perf_counter() - sent, status))
            self.stop.wait(self.period)


def send(url: str, body: bytes | None, timeout: float = 60) -> str:
    """One request; its status (or the exception's name)."""
    headers = {"content-type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return str(response.status)
    except urllib.error.HTTPError as error:
        error.read()
        return str(error.code)
    except Exception as error:  # a reset or a timeout
        return type(error).__name__


def block(base: str, ordinary: list[bytes], seconds: float, hostile: bytes | None) -> dict[str, Any]:
    """One block: c=8 ordinary predictions and /healthz polls, with the hostile body sent throughout."""
    poller = Poller(f"{base}/healthz")
    hostile_calls: list[tuple[float, str]] = []
    stop = threading.Event()

    def attack() -> None:
        while not stop.is_set():
            sent = time.perf_counter()
            status = send(f"{base}/v1/predict", hostile, timeout=120)
            hostile_calls.append((time.perf_counter() - sent, status))

    attacker = threading.Thread(target=attack, daemon=True) if hostile is not None else None
    poller.start()
    if attacker:
        attacker.start()
    load = run_load(f"{base}/v1/predict", ordinary, concurrency=8, requests=10**9, max_seconds=seconds)
    stop.set()
    poller.stop.set()
    if attacker:
        attacker.join(180)
    poller.join(60)
    ordered = sorted(load.latencies_ms)
    return {
        "p99_ms": percentile(ordered, 99),
        "requests": load.requests,
        "errors": load.errors,
        "healthz_max_ms": max((s for _, s, _ in poller.calls), default=float("nan")) * 1000,
        "healthz_failed": sum(1 for _, _, status in poller.calls if status != "200"),
        "hostile": hostile_calls,
    }


def measure_engine(
    engine: str, home: Path, workdir: Path, kinds: list[str], rounds: int, seconds: float
) -> list[dict[str, Any]]:
    from tagops.config import ServeConfig

    config = ServeConfig().model_dump(mode="json", exclude={"database_url"})
    limits = {k: config[k] for k in ("max_items", "max_text_length", "max_body_bytes")}
    ordinary = request_bodies(holdout_items())
    bodies = {kind: hostile_body(kind, **limits) for kind in kinds}
    rows = []
    with serve(
        home, engine, config, database=workdir / f"{engine}.db", log=workdir / f"{engine}.log"
    ) as server:
        run_load(f"{server.url}/v1/predict", ordinary, concurrency=8, requests=400)  # warm up
        for kind in kinds:
            body = bodies[kind]
            quiet, loud = [], []
            for _ in range(rounds):  # interleaved: quiet, hostile, quiet, hostile, ...
                quiet.append(block(server.url, ordinary, seconds, None))
                loud.append(block(server.url, ordinary, seconds, body))
            hostile = [call for b in loud for call in b["hostile"]]
            latencies = sorted(s for s, _ in hostile)
            statuses: dict[str, int] = {}
            for _, status in hostile:
                statuses[status] = statuses.get(status, 0) + 1
            quiet_p99 = statistics.median(b["p99_ms"] for b in quiet)
            loud_p99 = statistics.median(b["p99_ms"] for b in loud)
            row = {
                "engine": engine,
                "kind": kind,
                "body_bytes": len(body),
                "items": len(json.loads(body)["items"]),
                "hostile_requests": len(hostile),
                "hostile_statuses": statuses,
                "hostile_p50_s": round(percentile(latencies, 50), 3),
                "hostile_max_s": round(max(latencies, default=float("nan")), 3),
                "ns_per_byte": round(percentile(latencies, 50) / len(body) * 1e9, 1),
                "healthz_max_ms": round(max(b["healthz_max_ms"] for b in loud), 1),
                "healthz_failed": sum(b["healthz_failed"] for b in loud),
                "quiet_p99_ms": round(quiet_p99, 2),
                "hostile_block_p99_ms": round(loud_p99, 2),
                "p99_ratio": round(loud_p99 / quiet_p99, 2) if quiet_p99 else None,
                "p99_ratio_spread": [
                    round(min(b["p99_ms"] for b in loud) / quiet_p99, 2),
                    round(max(b["p99_ms"] for b in loud) / quiet_p99, 2),
                ],
                "ordinary_errors": sum(b["errors"] for b in quiet + loud),
            }
            row["pass"] = bool(
                row["hostile_max_s"] <= 2.0
                and all(s.startswith(("2", "4")) for s in statuses)
                and row["healthz_max_ms"] <= 1000
                and row["healthz_failed"] == 0
                and row["p99_ratio"] is not None
                and row["p99_ratio"] <= 3.0
                and row["ordinary_errors"] == 0
            )
            rows.append(row)
            print(
                f"{engine:8s} {kind:20s} {row['hostile_p50_s']:.3f} s/request "
                f"({row['ns_per_byte']} ns/B), healthz max {row['healthz_max_ms']} ms, "
                f"p99 x{row['p99_ratio']} {'ok' if row['pass'] else 'FAIL'}",
                flush=True,
            )
    ordinary_cost = {r["engine"]: r["ns_per_byte"] for r in rows if r["kind"] == "ordinary"}
    for row in rows:
        base = ordinary_cost.get(row["engine"])
        row["cost_vs_ordinary"] = round(row["ns_per_byte"] / base, 2) if base else None
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--engine", action="append", choices=["ray", "uvicorn"])
    parser.add_argument("--family", default="linear", help="champion family (trained into --home once)")
    parser.add_argument("--kind", action="append", choices=list(KINDS), help="default: every kind")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--block-seconds", type=float, default=4.0)
    parser.add_argument("--output", type=Path, default=RESULTS / "serve_hostile.json")
    args = parser.parse_args()

    versions = ensure_models(args.home, family=args.family)
    workdir = Path(tempfile.mkdtemp(prefix="hostile-", dir=args.home))
    before = machine()
    rows: list[dict[str, Any]] = []
    for engine in args.engine or ["ray", "uvicorn"]:
        rows += measure_engine(
            engine, args.home, workdir, args.kind or list(KINDS), args.rounds, args.block_seconds
        )
    print()
    print_table(
        rows,
        [
            "engine",
            "kind",
            "body_bytes",
            "hostile_p50_s",
            "hostile_max_s",
            "cost_vs_ordinary",
            "healthz_max_ms",
            "quiet_p99_ms",
            "hostile_block_p99_ms",
            "p99_ratio",
            "pass",
        ],
    )
    report = {
        "benchmark": "serve_hostile",
        "family": args.family,
        "versions": versions,
        "rounds": args.rounds,
        "block_seconds": args.block_seconds,
        "bars": {
            "hostile_max_s": 2.0,
            "healthz_max_ms": 1000,
            "p99_ratio": 3.0,
            "statuses": "2xx or 4xx only",
        },
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
