"""The console's predict page against the API it renders: what the HTML costs a person waiting for it.

    python benchmarks/console.py [--home /tmp/tagops-serve-bench] [--engines uvicorn,ray]
        [--family linear] [--blocks 8] [--per-block 60] [--output benchmarks/results/console.json]

One `tagops serve` per engine on loopback with the champion (``--family``, trained once into
``--home``). One request at a time, single items from the holdout of the data mirror, in interleaved
blocks: ``--per-block`` ``POST /v1/predict`` (JSON), then as many ``POST /console/predict`` (the form a
browser sends; the answer is the whole page, bars and feedback form included), and again, ``--blocks``
times. Each block gives a median; the table shows the median of those and their spread (min-max), and the
console's extra time per request: bar ≤ 20 ms at the median. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
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
    serve,
    write_json,
)
from stamp import stamp

#: The console may take this much longer than the API at the median.
BAR_MS = 20.0


def _timed_block(client: Any, path: str, items: list[dict[str, str]], start: int, count: int) -> list[float]:
    """``count`` requests to ``path`` one at a time; their latencies in ms (a failed one fails the run)."""
    latencies = []
    for i in range(count):
        item = items[(start + i) % len(items)]
        sent = time.perf_counter()
        if path == "/v1/predict":
            response = client.post(path, json={"items": [item]})
        else:
            response = client.post(path, data=item)
        elapsed = (time.perf_counter() - sent) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")
        if path != "/v1/predict" and "prediction" not in response.text.lower():
            raise RuntimeError(f"{path}: the page shows no prediction")
        latencies.append(elapsed)
    return latencies


def measure(url: str, items: list[dict[str, str]], blocks: int, per_block: int) -> dict[str, Any]:
    """Interleaved blocks of API and console requests against one server."""
    import httpx

    medians: dict[str, list[float]] = {"api": [], "console": []}
    with httpx.Client(base_url=url, timeout=60) as client:
        _timed_block(client, "/v1/predict", items, 0, 20)  # warm both paths and the templates
        _timed_block(client, "/console/predict", items, 0, 20)
        for block in range(blocks):
            start = block * per_block
            for name, path in (("api", "/v1/predict"), ("console", "/console/predict")):
                latencies = _timed_block(client, path, items, start, per_block)
                medians[name].append(statistics.median(latencies))
    api, console = statistics.median(medians["api"]), statistics.median(medians["console"])
    extra = [c - a for a, c in zip(medians["api"], medians["console"], strict=True)]
    return {
        "api_p50_ms": round(api, 2),
        "api_p50_spread_ms": [round(min(medians["api"]), 2), round(max(medians["api"]), 2)],
        "console_p50_ms": round(console, 2),
        "console_p50_spread_ms": [round(min(medians["console"]), 2), round(max(medians["console"]), 2)],
        "extra_ms": round(statistics.median(extra), 2),
        "extra_spread_ms": [round(min(extra), 2), round(max(extra), 2)],
        "block_medians_ms": {k: [round(v, 2) for v in vs] for k, vs in medians.items()},
        "met": statistics.median(extra) <= BAR_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME)
    parser.add_argument("--engines", default="uvicorn,ray")
    parser.add_argument("--family", default="linear")
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--per-block", type=int, default=60)
    parser.add_argument("--output", type=Path, default=RESULTS / "console.json")
    args = parser.parse_args()

    ensure_models(args.home, family=args.family)
    items = holdout_items()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tagops-console-") as tmp:
        workdir = Path(tmp)
        for engine in args.engines.split(","):
            database = workdir / f"{engine}.sqlite"
            with serve(args.home, engine, {}, database=database, log=workdir / f"{engine}.log") as server:
                results[engine] = measure(server.url, items, args.blocks, args.per_block)
    rows = [
        {
            "engine": engine,
            "API p50 ms": (
                f"{r['api_p50_ms']:.1f} ({r['api_p50_spread_ms'][0]:.1f}-{r['api_p50_spread_ms'][1]:.1f})"
            ),
            "console p50 ms": (
                f"{r['console_p50_ms']:.1f} "
                f"({r['console_p50_spread_ms'][0]:.1f}-{r['console_p50_spread_ms'][1]:.1f})"
            ),
            "extra ms": f"{r['extra_ms']:.1f} ({r['extra_spread_ms'][0]:.1f}-{r['extra_spread_ms'][1]:.1f})",
            f"bar <= {BAR_MS:.0f} ms": "met" if r["met"] else "MISSED",
        }
        for engine, r in results.items()
    ]
    print_table(rows, list(rows[0]))
    write_json(
        args.output,
        {
            **stamp(),
            "load": machine()["load_average"],
            "family": args.family,
            "blocks": args.blocks,
            "per_block": args.per_block,
            "bar_ms": BAR_MS,
            "engines": results,
        },
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
