"""The label audit on the real data: what it flags, and how much of a known share of wrong tags it finds.

    TAGOPS_DATA_MIRROR=../shared/datasets/madewithml .venv/bin/python benchmarks/label_audit.py \
        [--config configs/audit-ensemble.yaml] [--noise 0.02 0.05] [--seeds 1 2 3] [--folds 5]

First ``tagops data audit`` as it runs by default (the linear model, 5 folds; ``--config``: the train
config's model, as ``tagops data audit --config`` scores with it) on dataset.csv and on holdout.csv:
rows flagged, the estimated share of wrong tags, the out-of-fold F1. Then planted noise: for each share
and seed, that many rows of dataset.csv, drawn at random, get another tag drawn at random, and the audit
of the changed file is scored against the planted rows: precision and recall of confident learning's
flags, and of the flags with every out-of-fold disagreement added (``--disagreements``). The rows
already wrong in dataset.csv count against precision, so the figures are a lower bound on it.

Prints a table and writes ``benchmarks/results/label_audit.json`` (with ``--config``,
``label_audit-CONFIG.json`` after the config file's name).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from quality import config_name, results_path
from stamp import stamp

RESULTS = Path(__file__).parent / "results" / "label_audit.json"
ROOT = Path(__file__).resolve().parents[1]


def plant(frame: Any, share: float, seed: int) -> tuple[Any, set[int]]:
    """``frame`` with ``share`` of its rows given another tag at random, and the 0-based rows changed."""
    import numpy as np

    from tagops import LABELS

    rng = np.random.default_rng(seed)
    rows = rng.choice(len(frame), size=round(share * len(frame)), replace=False)
    changed = frame.copy()
    for row in rows:
        others = [tag for tag in LABELS if tag != changed.at[row, "tag"]]
        changed.at[row, "tag"] = others[int(rng.integers(len(others)))]
    return changed, {int(r) for r in rows}


def scores(found: set[int], planted: set[int]) -> dict[str, float]:
    """Precision and recall of ``found`` against ``planted`` rows."""
    hits = len(found & planted)
    return {
        "listed": len(found),
        "precision": hits / len(found) if found else 0.0,
        "recall": hits / len(planted) if planted else 0.0,
    }


#: What each planted run scores: confident learning's flags, and those with every disagreement added.
KINDS = ("flagged", "with_disagreements")


def summarise(runs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Median rows listed, precision and recall of ``kind`` over ``runs``, with the range of the last two."""
    figures = {key: [r[kind][key] for r in runs] for key in ("listed", "precision", "recall")}
    medians = {key: statistics.median(values) for key, values in figures.items()}
    return medians | {
        f"{key}_range": [min(figures[key]), max(figures[key])] for key in ("precision", "recall")
    }


def summary_of(audit: Any, seconds: float) -> dict[str, Any]:
    """What the results keep of one audit of a real file."""
    return {
        "rows": audit.rows,
        "flagged": len(audit.suspects),
        "estimated_noise": audit.estimated_noise,
        "estimated_flips": audit.estimated_flips,
        "out_of_fold_f1": audit.out_of_fold_f1,
        "seconds": seconds,
        "suspects": [
            {"row": s.row, "id": s.id, "tag": s.tag, "suggested": s.suggested, "p_given": s.p_given}
            for s in audit.suspects
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.02, 0.05])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--config", type=Path, default=None, help="Train config YAML: its model scores.")
    args = parser.parse_args()
    mirror = Path(os.environ.get("TAGOPS_DATA_MIRROR") or ROOT.parent / "shared" / "datasets" / "madewithml")
    if not (mirror / "dataset.csv").is_file():
        raise SystemExit(f"the data mirror is not at {mirror}: set TAGOPS_DATA_MIRROR")

    from tagops.config import TrainConfig, load_config
    from tagops.data.validate import load_projects
    from tagops.workloads.audit import audit_labels

    params = load_config(TrainConfig, args.config).model  # as `tagops data audit [--config]` scores
    results = RESULTS if args.config is None else results_path("label_audit", args.config)
    files: dict[str, dict[str, Any]] = {}
    for name in ("dataset.csv", "holdout.csv"):
        began = time.perf_counter()
        audit = audit_labels(load_projects(mirror / name), params, file=name, folds=args.folds)
        files[name] = summary_of(audit, time.perf_counter() - began)
        print(
            f"{name}: {files[name]['flagged']} of {audit.rows} rows flagged, estimated wrong tags "
            f"{audit.estimated_noise:.1%}, out-of-fold F1 {audit.out_of_fold_f1:.3f} "
            f"({files[name]['seconds']:.1f} s)"
        )

    dataset = load_projects(mirror / "dataset.csv")
    planted_runs = []
    print(
        f"\n{'noise':>6} {'seed':>4} {'planted':>7} | {'flagged':>7} {'prec':>5} {'recall':>6} | "
        f"{'+disagree':>9} {'prec':>5} {'recall':>6}"
    )
    for share in args.noise:
        for seed in args.seeds:
            changed, planted = plant(dataset, share, seed)
            audit = audit_labels(changed, params, file="dataset.csv", folds=args.folds, disagreements=True)
            confident = {s.row - 1 for s in audit.suspects if s.confident}
            listed = {s.row - 1 for s in audit.suspects}
            run = {
                "noise": share,
                "seed": seed,
                "planted": len(planted),
                "estimated_noise": audit.estimated_noise,
                "flagged": scores(confident, planted),
                "with_disagreements": scores(listed, planted),
            }
            planted_runs.append(run)
            f, d = run["flagged"], run["with_disagreements"]
            print(
                f"{share:6.0%} {seed:4d} {len(planted):7d} | {f['listed']:7d} {f['precision']:5.2f} "
                f"{f['recall']:6.2f} | {d['listed']:9d} {d['precision']:5.2f} {d['recall']:6.2f}"
            )

    medians = {}
    for share in args.noise:
        runs = [r for r in planted_runs if r["noise"] == share]
        medians[str(share)] = {kind: summarise(runs, kind) for kind in KINDS} | {
            "estimated_noise": statistics.median(r["estimated_noise"] for r in runs)
        }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(
        json.dumps(
            {
                "benchmark": "label_audit",
                **({} if args.config is None else {"config": config_name(args.config)}),
                "family": params.family,
                "folds": args.folds,
                "files": files,
                "planted": planted_runs,
                "planted_medians": medians,
                **stamp(),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(results)


if __name__ == "__main__":
    main()
