"""The warehouse build on the real data: a first build in a fresh home, then rebuilds of the same sources.

    TAGOPS_DATA_MIRROR=../shared/datasets/madewithml .venv/bin/python benchmarks/warehouse.py [--builds 5]

Each build is ``build_snapshot`` as ``tagops data build --no-feedback`` runs it, in this process: the four
files verified against the manifest, every SQL file and data test, the content hash and, the first time,
the Parquet snapshot. The first build also copies the files from the mirror and writes the snapshot; the
rebuilds find both in place and write nothing. Each build runs with a cold DuckDB database (a new file).

Prints a table and writes ``benchmarks/results/warehouse.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from stamp import stamp

RESULTS = Path(__file__).parent / "results" / "warehouse.json"
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", type=int, default=5)
    args = parser.parse_args()
    mirror = Path(os.environ.get("TAGOPS_DATA_MIRROR") or ROOT.parent / "shared" / "datasets" / "madewithml")
    if not (mirror / "dataset.csv").is_file():
        raise SystemExit(f"the data mirror is not at {mirror}: set TAGOPS_DATA_MIRROR")

    started = time.perf_counter()
    from tagops.settings import Settings
    from tagops.warehouse.build import build_snapshot

    import_s = time.perf_counter() - started
    builds = []
    with tempfile.TemporaryDirectory(prefix="tagops-warehouse-") as home:
        settings = Settings(home=Path(home), data_mirror=mirror)
        for number in range(1, args.builds + 1):
            began = time.perf_counter()
            snapshot = build_snapshot(settings, feedback=False)
            seconds = time.perf_counter() - began
            builds.append(
                {
                    "build": number,
                    "seconds": seconds,
                    "created": snapshot.created,
                    "snapshot_id": snapshot.snapshot_id,
                    "rows": {name: t.rows for name, t in snapshot.lineage.tables.items()},
                }
            )
    rebuilds = [b["seconds"] for b in builds[1:]] or [builds[0]["seconds"]]
    summary = {
        "first_s": builds[0]["seconds"],
        "rebuild_median_s": statistics.median(rebuilds),
        "rebuild_min_s": min(rebuilds),
        "rebuild_max_s": max(rebuilds),
        "all_median_s": statistics.median(b["seconds"] for b in builds),
        "same_id": len({b["snapshot_id"] for b in builds}) == 1,
        "snapshots_written": sum(b["created"] for b in builds),
        "import_s": import_s,
    }
    print(f"{'build':>5} {'seconds':>8}  {'snapshot':16}  written")
    for b in builds:
        print(
            f"{b['build']:5d} {b['seconds']:8.3f}  {b['snapshot_id']:16}  {'yes' if b['created'] else 'no'}"
        )
    print(
        f"first build {summary['first_s']:.3f} s; rebuilds median {summary['rebuild_median_s']:.3f} s "
        f"(spread {summary['rebuild_min_s']:.3f}-{summary['rebuild_max_s']:.3f} s); "
        f"all {len(builds)} builds median {summary['all_median_s']:.3f} s; "
        f"same snapshot id: {summary['same_id']}; snapshots written: {summary['snapshots_written']}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "warehouse",
                "builds": builds,
                "summary": summary,
                "rows": builds[0]["rows"],
                "bar": {
                    "max_build_s": 10.0,
                    "pass": max(b["seconds"] for b in builds) <= 10.0 and summary["same_id"],
                },
                **stamp(),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(RESULTS)


if __name__ == "__main__":
    main()
