"""Model quality on the real holdout: every family, several seeds, median and spread.

    python benchmarks/quality.py [--families rules linear transformer ensemble] [--seeds 1234 42 7]
                                 [--engine local|ray] [--config FILE.yaml] [--output FILE.json]

Each seed changes the train/validation split and the model's own randomness. Two recipes are measured:
``split`` (the model trained on the 80 % train split, as the reference system did) and ``refit`` (the same
recipe refit on all of dataset.csv after validation, what ``tagops`` registers by default). Prints a
table and writes JSON (default benchmarks/results/quality.json; for another pipeline config than
configs/pipeline.yaml, given with ``--config``, quality-CONFIG.json). Reads the real data from
TAGOPS_DATA_MIRROR (or the shared mirror beside the repository), verified against the package manifest.

Each model is also scored for robustness (``tagops.workloads.evaluate.evaluate_robustness``): the holdout
as-is, transformed copies of it (the same transform seed for every model, so all see the same text) and
the challenge set, whole and by style; per run in ``runs[].robustness``, medians across seeds per slice.

The transformer keeps its best epoch on the validation split (``split``); its ``refit`` is what
``tagops train`` registers: by default (``refit: false``) the same early-stopped model, else a refit for
that many epochs. ``--engine local`` (default) runs the transformer's training loop in this process
instead of on Ray Train workers (the same loop, seeds and batches). The ensemble is assembled from the
transformer and linear models of the same seed and recipe, as the pipeline assembles it (nothing is
trained twice).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from stamp import stamp
from tagops.config import (
    AnyModelParams,
    DataConfig,
    EnsembleParams,
    EvalConfig,
    PipelineConfig,
    TransformerParams,
)
from tagops.config.base import load_config
from tagops.data.augment import RECIPES, augment_rows
from tagops.data.ingest import load_manifest, pull_data
from tagops.data.robustness import describe_transforms
from tagops.data.stages import DataSnapshot, split_stage, validate_stage
from tagops.data.stages import snapshot as make_snapshot
from tagops.inference.loading import load_predictor
from tagops.models.ensemble import member_dirname, write_descriptor
from tagops.settings import Settings
from tagops.workloads.calibrate import calibrate_stage, carry_calibration_stage
from tagops.workloads.evaluate import evaluate_robustness, load_default_challenge
from tagops.workloads.fit import fit_stage, refit_stage
from tagops.workloads.train import evaluate_stage

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_CONFIG = ROOT / "configs" / "pipeline.yaml"
REFERENCE = {  # Made With ML, holdout weighted F1 (see ../shared/design/reference-system.md)
    "SciBERT fine-tuned (GPU)": 0.905,
    "SciBERT after tuning (GPU)": 0.947,
    "TF-IDF char n-grams + logistic (older split)": 0.865,
    "rule-based (older split)": 0.29,
}
#: The families measured, as the pipeline config lists them (their parameters come from the config).
FAMILIES = ("rules", "linear", "transformer", "ensemble")


def with_engine(params: AnyModelParams, engine: str) -> AnyModelParams:
    """``params`` with every transformer (an ensemble's members too) trained by ``engine``."""
    if isinstance(params, TransformerParams):
        return params.model_copy(update={"engine": engine})
    if isinstance(params, EnsembleParams):
        members = tuple(with_engine(m, engine) for m in params.members)
        return params.model_copy(update={"members": members})
    return params


def results_path(benchmark: str, config: Path, *variants: str) -> Path:
    """``benchmarks/results/BENCHMARK[-CONFIG][-VARIANT...].json``: another config than the pipeline's
    is named by its file's stem."""
    parts = [] if Path(config).resolve() == PIPELINE_CONFIG else [Path(config).stem]
    return ROOT / "benchmarks" / "results" / ("-".join([benchmark, *parts, *variants]) + ".json")


def config_name(path: Path) -> str:
    """A config as results name it: relative to the repository when inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def assemble_ensemble(params: EnsembleParams, member_dirs: list[Path], output: Path) -> Path:
    """An ensemble folder from members already trained (copies), as the pipeline's ensemble step does."""
    for index, (member, source) in enumerate(zip(params.members, member_dirs, strict=True)):
        shutil.copytree(source, output / member_dirname(index, member.family))
    write_descriptor(output, params)
    return output


def load_real_data(
    data_dir: Path, extra: tuple[str, ...] = ()
) -> tuple[DataSnapshot, pd.DataFrame, pd.DataFrame]:
    """The real dataset.csv and holdout.csv, verified against the package manifest and validated.

    Read from TAGOPS_DATA_MIRROR, else the shared mirror beside the repository; copied into ``data_dir``
    with the ``extra`` files of the manifest (``projects.csv``, ``tags.csv``), verified the same way.
    """
    mirror = Path(os.environ.get("TAGOPS_DATA_MIRROR") or ROOT.parent / "shared" / "datasets" / "madewithml")
    files = pull_data(
        data_dir,
        mirror=mirror,
        base_url="",
        files=("dataset.csv", "holdout.csv", *extra),
        manifest=load_manifest(),
    )
    data = make_snapshot(files["dataset.csv"], files["holdout.csv"])
    dataset, holdout = validate_stage(data)
    return data, dataset, holdout


def robustness_medians(runs: list[dict]) -> dict:
    """Per slice, the median across seeds of weighted and macro F1, and the slice lowest by that median."""
    slices = list(runs[0]["robustness"]["slices"])

    def median(slice_name: str, key: str) -> float | None:
        values = [r["robustness"]["slices"][slice_name][key] for r in runs]
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None

    f1 = {name: median(name, "f1") for name in slices}
    scored = [(value, name) for name, value in f1.items() if value is not None]
    return {
        "robustness_f1_median": f1,
        "robustness_macro_f1_median": {name: median(name, "macro_f1") for name in slices},
        "robustness_worst_slice": min(scored, key=lambda pair: pair[0])[1] if scored else None,
    }


def print_robustness(results: list[dict]) -> None:
    """Median weighted F1 by robustness slice (rows) for each family and recipe (columns)."""
    columns = [f"{r['family']}/{r['recipe']}" for r in results]
    slices = list(dict.fromkeys(name for r in results for name in r["robustness_f1_median"]))
    width = max([len(name) for name in slices] + [5])
    print("\nRobustness: median weighted F1 by slice (* the family's worst slice)")
    print(f"{'slice':<{width}} " + " ".join(f"{c:>18}" for c in columns))
    for name in slices:
        cells = []
        for r in results:
            value = r["robustness_f1_median"].get(name)
            mark = "*" if r["robustness_worst_slice"] == name else " "
            cells.append(f"{'–' if value is None else f'{value:.4f}':>17}{mark}")
        print(f"{name:<{width}} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1234, 42, 7])
    parser.add_argument("--engine", choices=["local", "ray"], default="local", help="transformer training")
    parser.add_argument("--augment", choices=RECIPES, help="augmentation recipe (default: the pipeline's)")
    parser.add_argument("--fraction", type=float, help="share of training rows augmented")
    parser.add_argument("--config", type=Path, default=PIPELINE_CONFIG, help="pipeline config YAML")
    parser.add_argument("--output", type=Path, default=None, help="default: quality[-CONFIG].json")
    args = parser.parse_args()
    pipeline = load_config(PipelineConfig, args.config)
    args.output = args.output or results_path("quality", args.config)
    overrides = {"recipe": args.augment, "fraction": args.fraction}
    augmentation = pipeline.augmentation.model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    calibration = pipeline.calibration

    workdir = Path(tempfile.mkdtemp(prefix="tagops-quality-"))
    _, dataset, holdout = load_real_data(workdir / "data")
    evaluation = EvalConfig(bootstrap_samples=1000)
    settings = Settings(home=workdir / "home")  # Ray Train keeps its checkpoints under it
    challenge = load_default_challenge()

    families = {p.family: with_engine(p, args.engine) for p in pipeline.models}
    missing = [f for f in args.families if f not in families]
    if missing:
        raise SystemExit(f"{args.config}: no model of the families {missing} in 'models'")
    trained: dict[tuple[str, str, int], tuple[Path, float]] = {}
    order = sorted(args.families, key=lambda f: f == "ensemble")  # members first
    load_before = os.getloadavg()
    results = []
    for family in order:
        params = families[family]
        for recipe in ("split", "refit"):
            runs = []
            for seed in args.seeds:
                train, val = split_stage(dataset, DataConfig(seed=seed))
                rows = {
                    name: augment_rows(frame, augmentation, seed=seed)
                    for name, frame in (("train", train), ("dataset", dataset))
                }
                started = time.perf_counter()
                out = workdir / f"{family}-{recipe}-{seed}"
                members = (
                    [trained.get((m.family, recipe, seed)) for m in params.members]
                    if isinstance(params, EnsembleParams)
                    else None
                )
                if isinstance(params, EnsembleParams) and members and all(members):
                    model_dir = assemble_ensemble(params, [m[0] for m in members if m], out)
                    fit_seconds = sum(m[1] for m in members if m)
                else:
                    split = trained.get((family, "split", seed))
                    if recipe == "split":
                        model_dir = fit_stage(
                            rows["train"], params, seed=seed, output_dir=out, val=val, settings=settings
                        )
                    elif split is not None:  # as `tagops train` refits (a transformer keeps its model)
                        model_dir = refit_stage(
                            rows["dataset"],
                            params,
                            seed=seed,
                            val_model_dir=split[0],
                            output_dir=out,
                            settings=settings,
                        )
                    else:
                        model_dir = fit_stage(
                            rows["dataset"], params, seed=seed, output_dir=out, settings=settings
                        )
                    fit_seconds = time.perf_counter() - started
                    if split is not None and model_dir == split[0]:
                        fit_seconds = split[1]  # the kept model's own training time
                if recipe == "split":  # as the pipeline: calibrated on validation, carried to the refit
                    calibrate_stage(model_dir, val, calibration, evaluation)
                elif (validated := trained.get((family, "split", seed))) is not None:
                    carry_calibration_stage(model_dir, validated[0])
                trained[(family, recipe, seed)] = (model_dir, fit_seconds)
                report = evaluate_stage(model_dir, holdout, evaluation)
                predictor = load_predictor(str(model_dir), settings, threshold=evaluation.threshold)
                robustness = evaluate_robustness(predictor, holdout, evaluation, challenge=challenge)
                val_f1 = None
                if recipe == "split":
                    val_f1 = evaluate_stage(model_dir, val, evaluation)["overall"]["f1"]
                runs.append(
                    {
                        "seed": seed,
                        "fit_seconds": round(fit_seconds, 3),
                        "val_f1": val_f1,
                        "overall": report["overall"],
                        "threshold": report.get("threshold"),
                        "raw": report.get("raw"),
                        "per_class_f1": {k: v["f1"] for k, v in report["per_class"].items()},
                        "slices_f1": {k: v["f1"] for k, v in report["slices"].items()},
                        "ece": report["calibration"]["ece"],
                        "robustness": robustness,
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
                    "min_class_f1_median": statistics.median(min(r["per_class_f1"].values()) for r in runs),
                    "fit_seconds_median": statistics.median(r["fit_seconds"] for r in runs),
                    **robustness_medians(runs),
                    "runs": runs,
                }
            )

    header = (
        f"{'family':<11} {'recipe':<6} {'F1 median':>9} {'spread':>15} {'P':>6} {'R':>6} {'macro F1':>8} "
        + " ".join(f"{lab[:10]:>10}" for lab in labels)
        + f" {'min class':>9} {'fit s':>7}"
    )
    print(
        f"Holdout (n={len(holdout)}), seeds {args.seeds}, {platform.node()} ({os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.1f} before / {os.getloadavg()[0]:.1f} after: other work slows fit s)"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['family']:<11} {r['recipe']:<6} {r['f1_median']:>9.4f} "
            f"[{r['f1_min']:.4f},{r['f1_max']:.4f}] "
            f"{r['precision_median']:>6.3f} {r['recall_median']:>6.3f} {r['macro_f1_median']:>8.4f} "
            + " ".join(f"{r['per_class_f1_median'][lab]:>10.3f}" for lab in labels)
            + f" {r['min_class_f1_median']:>9.3f} {r['fit_seconds_median']:>7.1f}"
        )
    print_robustness(results)
    print("\nReference system (holdout weighted F1):")
    for name, value in REFERENCE.items():
        print(f"  {name:<46} {value:.3f}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "config": config_name(args.config),
                "seeds": args.seeds,
                "holdout_rows": len(holdout),
                "challenge_rows": len(challenge),
                "robustness_seed": evaluation.seed,
                "robustness_transforms": describe_transforms(),
                "augmentation": augmentation.model_dump(mode="json"),
                "calibration": calibration.model_dump(mode="json"),
                "results": results,
                "reference": REFERENCE,
                "cpus": os.cpu_count(),
                "load_average_before_after": [load_before[0], os.getloadavg()[0]],
                "transformer_engine": args.engine,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **stamp(),
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
