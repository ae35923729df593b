"""Batch inference throughput: the transformer through Ray Data against the raw in-process model.

    python benchmarks/batch_predict.py [--rows 10000] [--model MODEL_DIR] [--output FILE.json]

Rows are real project texts (dataset.csv + holdout.csv, repeated to ``--rows``). Measured, in order:

* ``in-process raw``: ``model.predict_proba(texts)`` on every row (batched by length, torch threads =
  the CPUs), the bar to meet; model loading excluded.
* ``in-process file``: ``tagops.inference.predictor.predict_file`` (read, validate, predict, write JSONL).
* ``ray data AxC``: ``tagops.workloads.batch.predict_file`` with A actors of C CPUs on an already started Ray
  cluster (what ``tagops predict --engine ray`` does after ``ray.init``), end to end: reading, actor
  start-up, model loading and writing included, cluster start-up not.
* ``ray data AxC steady``: the same run from its first batch's start to its last batch's end (the
  throughput a long file approaches, once the actors are up).

Without ``--model`` the bundled all-MiniLM-L6-v2 gets an untrained head: throughput does not depend on
the weights' values. Prints a table and writes JSON (default benchmarks/results/batch_predict.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from stamp import stamp

ROOT = Path(__file__).resolve().parents[1]


def untrained_model(folder: Path) -> Path:
    """MiniLM with a fresh head, saved as a tagops model folder."""
    from tagops.config import TransformerParams
    from tagops.models.transformer import TransformerModel
    from tagops.models.transformer.network import load_pretrained_classifier, load_tokenizer, resolve_encoder

    params = TransformerParams()
    source = resolve_encoder(None)
    model = TransformerModel(params).adopt(
        load_pretrained_classifier(source, params, 4), load_tokenizer(source), {"note": "untrained head"}
    )
    model.save(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--model", type=Path, help="a saved transformer model folder")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "batch_predict.json")
    args = parser.parse_args()

    from tagops.inference.predictor import Predictor, predict_file
    from tagops.runtime import available_cpus, ray_session
    from tagops.settings import QUIET_ENVIRONMENT, Settings
    from tagops.workloads import batch

    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    mirror = Path(os.environ.get("TAGOPS_DATA_MIRROR") or ROOT.parent / "shared" / "datasets" / "madewithml")
    workdir = Path(tempfile.mkdtemp(prefix="tgbp-", dir="/tmp"))  # short: Ray's socket paths live under it
    try:
        frame = pd.concat([pd.read_csv(mirror / "dataset.csv"), pd.read_csv(mirror / "holdout.csv")])
        frame = frame[["title", "description"]].fillna("")
        items = pd.concat([frame] * (args.rows // len(frame) + 1), ignore_index=True).iloc[: args.rows]
        items.insert(0, "id", range(1, len(items) + 1))
        input_path = workdir / "items.csv"
        items.to_csv(input_path, index=False)
        model_dir = args.model or untrained_model(workdir / "model")
        predictor = Predictor.from_directory(model_dir)
        texts = Predictor.texts(items["title"].tolist(), items["description"].tolist())
        cpus = available_cpus()
        load_before = os.getloadavg()[0]
        rows: list[dict[str, object]] = []

        def record(name: str, seconds: float, note: str) -> None:
            rate = round(len(items) / seconds, 1)
            rows.append({"path": name, "seconds": round(seconds, 2), "rows_per_s": rate, "note": note})

        predictor.model.predict_proba(texts[:64])  # warm-up: first-call allocations
        started = time.perf_counter()
        predictor.model.predict_proba(texts)
        record("in-process raw", time.perf_counter() - started, f"predict_proba, {cpus} torch threads")

        started = time.perf_counter()
        predict_file(predictor, input_path, workdir / "local.jsonl")
        record("in-process file", time.perf_counter() - started, "read + validate + predict + write")

        settings = Settings(home=workdir / "home")
        with ray_session(settings):
            for actors, cpus_per_actor in ((cpus, 1), (1, cpus)):
                stats: dict[str, float] = {}
                started = time.perf_counter()
                batch.predict_file(
                    predictor,
                    input_path,
                    workdir / f"ray-{actors}x{cpus_per_actor}.jsonl",
                    settings,
                    actors=actors,
                    cpus_per_actor=cpus_per_actor,
                    stats=stats,
                )
                name = f"ray data {actors}x{cpus_per_actor}"
                record(
                    name, time.perf_counter() - started, "end to end: read, actor start, model load, write"
                )
                record(
                    f"{name} steady",
                    stats["last_batch_finished"] - stats["first_batch_started"],
                    "first batch start to last batch end, across the actors",
                )
        same = [
            (json.loads(a)["tag"] == json.loads(b)["tag"])
            for a, b in zip(
                (workdir / "local.jsonl").read_text().splitlines(),
                (workdir / f"ray-{cpus}x1.jsonl").read_text().splitlines(),
                strict=True,
            )
        ]
        raw = float(rows[0]["rows_per_s"])  # type: ignore[arg-type]
        print(f"Batch inference, {len(items)} rows, {platform.node()} ({cpus} CPUs, load average "
              f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after)")  # fmt: skip
        header = f"{'path':<24} {'seconds':>8} {'rows/s':>8} {'vs raw':>7}  note"
        print(header)
        print("-" * len(header))
        for row in rows:
            ratio = float(row["rows_per_s"]) / raw  # type: ignore[arg-type]
            row["vs_raw"] = round(ratio, 3)
            numbers = f"{row['seconds']:>8.2f} {row['rows_per_s']:>8.1f} {ratio:>7.2f}"
            print(f"{row['path']:<24} {numbers}  {row['note']}")
        print(f"\nRay output tags equal the in-process output on {sum(same)}/{len(same)} rows")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps(
                {
                    "rows": len(items),
                    "cpus": cpus,
                    "load_average_before_after": [load_before, os.getloadavg()[0]],
                    "model": str(args.model) if args.model else "all-MiniLM-L6-v2, untrained head",
                    "results": rows,
                    "tags_equal": sum(same),
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    **stamp(),
                },
                indent=2,
            )
        )
        print(f"wrote {args.output}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
