"""Model quality on the real holdout: every family, several seeds, median and spread.

    python benchmarks/quality.py [--families rules linear] [--seeds 1234 42 7] [--output FILE.json]

Each seed changes the train/validation split and the model's own randomness. Two recipes are measured:
``split`` (the model trained on the 80 % train split, as the reference system did) and ``refit`` (the same
recipe refit on all of dataset.csv after validation, what ``tagops`` registers by default). Prints a
table and writes JSON (default benchmarks/results/quality.json). Reads the real data from
TAGOPS_DATA_MIRROR (or the shared mirror beside the repository), verified against the package manifest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from tagops.config import DataConfig, EvalConfig, LinearParams, RulesParams
from tagops.data.ingest import load_manifest, pull_data
from tagops.train import evaluate_stage, fit_stage, split_stage, validate_stage
from tagops.train import snapshot as make_snapshot

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = {  # Made With ML, holdout weighted F1 (see ../shared/design/reference-system.md)
    "SciBERT fine-tuned (GPU)": 0.905,
    "SciBERT after tuning (GPU)": 0.947,
    "TF-IDF char n-grams + logistic (older split)": 0.865,
    "rule-based (older split)": 0.29,
}
FAMILIES = {"rules": RulesParams(), "linear": LinearParams()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1234, 42, 7])
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "quality.json")
    args = parser.parse_args()

    mirror = Path(os.environ.get("TAGOPS_DATA_MIRROR") or ROOT.parent / "shared" / "datasets" / "madewithml")
    workdir = Path(tempfile.mkdtemp(prefix="tagops-quality-"))
    files = pull_data(
        workdir / "data",
        mirror=mirror,
        base_url="",
        files=("dataset.csv", "holdout.csv"),
        manifest=load_manifest(),
    )
    dataset, holdout = validate_stage(make_snapshot(files["dataset.csv"], files["holdout.csv"]))
    evaluation = EvalConfig(bootstrap_samples=1000)

    results = []
    for family in args.families:
        for recipe in ("split", "refit"):
            runs = []
            for seed in args.seeds:
                train, val = split_stage(dataset, DataConfig(seed=seed))
                started = time.perf_counter()
                out = workdir / f"{family}-{recipe}-{seed}"
                model_dir = fit_stage(
                    train if recipe == "split" else dataset, FAMILIES[family], seed=seed, output_dir=out
                )
                fit_seconds = time.perf_counter() - started
                report = evaluate_stage(model_dir, holdout, evaluation)
                val_f1 = None
                if recipe == "split":
                    val_f1 = evaluate_stage(model_dir, val, evaluation)["overall"]["f1"]
                runs.append(
                    {
                        "seed": seed,
                        "fit_seconds": round(fit_seconds, 3),
                        "val_f1": val_f1,
                        "overall": report["overall"],
                        "per_class_f1": {k: v["f1"] for k, v in report["per_class"].items()},
                        "slices_f1": {k: v["f1"] for k, v in report["slices"].items()},
                        "ece": report["calibration"]["ece"],
                    }
                )
            f1s = [r["overall"]["f1"] for r in runs]
            labels = list(runs[0]["per_class_f1"])
            results.append(
                {
                    "family": family,
                    "recipe": recipe,
                    "f1_median": statistics.median(f1s),
                    "f1_min": min(f1s),
                    "f1_max": max(f1s),
                    "f1_ci95_of_median_seed": sorted(runs, key=lambda r: r["overall"]["f1"])[len(runs) // 2][
                        "overall"
                    ]["f1_ci95"],
                    "precision_median": statistics.median(r["overall"]["precision"] for r in runs),
                    "recall_median": statistics.median(r["overall"]["recall"] for r in runs),
                    "macro_f1_median": statistics.median(r["overall"]["macro_f1"] for r in runs),
                    "per_class_f1_median": {
                        lab: statistics.median(r["per_class_f1"][lab] for r in runs) for lab in labels
                    },
                    "fit_seconds_median": statistics.median(r["fit_seconds"] for r in runs),
                    "runs": runs,
                }
            )

    header = (
        f"{'family':<8} {'recipe':<6} {'F1 median':>9} {'spread':>15} {'P':>6} {'R':>6} {'macro F1':>8} "
        + " ".join(f"{lab[:10]:>10}" for lab in labels)
        + f" {'fit s':>6}"
    )
    print(f"Holdout (n={len(holdout)}), seeds {args.seeds}, {platform.node()} ({os.cpu_count()} CPUs)")
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['family']:<8} {r['recipe']:<6} {r['f1_median']:>9.4f} [{r['f1_min']:.4f},{r['f1_max']:.4f}] "
            f"{r['precision_median']:>6.3f} {r['recall_median']:>6.3f} {r['macro_f1_median']:>8.4f} "
            + " ".join(f"{r['per_class_f1_median'][lab]:>10.3f}" for lab in labels)
            + f" {r['fit_seconds_median']:>6.2f}"
        )
    print("\nReference system (holdout weighted F1):")
    for name, value in REFERENCE.items():
        print(f"  {name:<46} {value:.3f}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "seeds": args.seeds,
                "holdout_rows": len(holdout),
                "results": results,
                "reference": REFERENCE,
                "cpus": os.cpu_count(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
