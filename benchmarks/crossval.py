"""Cross-validation of a training recipe (default: the pipeline's) on dataset.csv: per fold, mean, spread.

    python benchmarks/crossval.py [--families rules linear transformer ensemble] [--folds 5] [--seed 1234]
                                  [--engine local|ray] [--augment NAME] [--config FILE.yaml]
                                  [--output FILE.json]

dataset.csv is cut into ``--folds`` stratified folds. For each fold, the other folds are split 80/20 into
train and validation as ``tagops.data.stages.split_stage`` splits (stratified, seeded with the fold's
seed, ``--seed`` plus the fold's index), and each family of configs/pipeline.yaml is trained as the
training pipeline trains it: fitted on train (the transformer stops early on validation), then rules and
linear refit on all the other folds while the transformer keeps its early-stopped model; the ensemble is
assembled from the transformer and linear models of the same fold (nothing is trained twice). Each final
model is scored on the held-out fold through ``evaluate_stage``, so the model's own calibration and
abstention threshold apply as they do in serving. Where ``tagops.workloads.calibrate`` exists, each
model is calibrated on the fold's validation split first and the JSON records that it was.

The holdout is not used: it stays for the final report (``benchmarks/quality.py``). ``--augment NAME``
augments the training rows only (never validation or the held-out fold) through
``tagops.data.augment.augment_frame``. ``--config`` cross-validates another pipeline config's recipe
(default configs/pipeline.yaml). Prints a table and writes JSON (default
benchmarks/results/crossval.json; with ``--augment``, crossval-NAME.json; with another config,
crossval-CONFIG[-NAME].json after the config file's name).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quality import (
    PIPELINE_CONFIG,
    assemble_ensemble,
    config_name,
    load_real_data,
    results_path,
    with_engine,
)
from stamp import stamp
from tagops.config import (
    AnyModelParams,
    AugmentConfig,
    CalibrationConfig,
    DataConfig,
    EnsembleParams,
    EvalConfig,
    PipelineConfig,
)
from tagops.config.base import load_config
from tagops.data.augment import RECIPES, augment_rows
from tagops.data.stages import split_stage
from tagops.models.base import read_model_info
from tagops.settings import Settings
from tagops.workloads.calibrate import calibrate_stage, carry_calibration_stage
from tagops.workloads.fit import fit_stage, refit_stage
from tagops.workloads.train import evaluate_stage

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("rules", "linear", "transformer", "ensemble")
NO_AUGMENTATION = "none"


# ------------------------------------------------------------------------------------------- recipe
def pipeline_recipe(engine: str, config_path: Path = PIPELINE_CONFIG) -> PipelineConfig:
    """The training pipeline's config, its transformers trained by ``engine``."""
    cfg = load_config(PipelineConfig, config_path)
    return cfg.model_copy(update={"models": tuple(with_engine(m, engine) for m in cfg.models)})


def stratified_folds(frame: pd.DataFrame, folds: int, seed: int) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """``folds`` seeded, stratified (training rows, held-out rows) pairs; each row is held out once.

    Raises:
        ValueError: if a label has fewer rows than there are folds.

    """
    from sklearn.model_selection import StratifiedKFold

    counts = frame["tag"].value_counts()
    rare = counts[counts < folds]
    if not rare.empty:
        raise ValueError(f"cannot cut {folds} stratified folds: labels with fewer rows: {rare.to_dict()}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [
        (frame.iloc[rest].reset_index(drop=True), frame.iloc[held_out].reset_index(drop=True))
        for rest, held_out in splitter.split(frame, frame["tag"])
    ]


def augment_train(frame: pd.DataFrame, augmentation: AugmentConfig, *, seed: int) -> pd.DataFrame:
    """The training rows as the recipe fits on them (``tagops.data.augment``)."""
    return augment_rows(frame, augmentation, seed=seed)


def calibrate_model(
    val_model_dir: Path,
    model_dir: Path,
    val: pd.DataFrame,
    calibration: CalibrationConfig,
    evaluation: EvalConfig,
) -> None:
    """Calibrate the model trained on train on ``val``; the final (refit) model gets that calibration."""
    calibrate_stage(val_model_dir, val, calibration, evaluation)
    carry_calibration_stage(model_dir, val_model_dir)


# --------------------------------------------------------------------------------------------- folds
@dataclass(frozen=True)
class Trained:
    """One family trained on one fold: the model validation saw, the final model, their training times."""

    params: AnyModelParams
    val_model_dir: Path
    model_dir: Path
    fit_seconds: float
    refit_seconds: float


def train_family(
    params: AnyModelParams,
    trained: dict[str, Trained],
    *,
    train: pd.DataFrame,
    val: pd.DataFrame,
    refit_rows: pd.DataFrame,
    seed: int,
    workdir: Path,
    settings: Settings,
) -> Trained:
    """Train one family of one fold as the pipeline does: fit on train, then refit on ``refit_rows``.

    An ensemble whose members ``trained`` holds with the same parameters is assembled from them.
    """
    family = params.family
    if isinstance(params, EnsembleParams) and all(
        m.family in trained and trained[m.family].params == m for m in params.members
    ):
        members = [trained[m.family] for m in params.members]
        return Trained(
            params,
            assemble_ensemble(params, [m.val_model_dir for m in members], workdir / f"{family}-val"),
            assemble_ensemble(params, [m.model_dir for m in members], workdir / family),
            sum(m.fit_seconds for m in members),
            sum(m.refit_seconds for m in members),
        )
    started = time.perf_counter()
    val_dir = fit_stage(
        train, params, seed=seed, output_dir=workdir / f"{family}-val", val=val, settings=settings
    )
    fitted = time.perf_counter()
    model_dir = refit_stage(
        refit_rows, params, seed=seed, val_model_dir=val_dir, output_dir=workdir / family, settings=settings
    )
    return Trained(params, val_dir, model_dir, fitted - started, time.perf_counter() - fitted)


def cross_validate(
    dataset: pd.DataFrame,
    families: list[AnyModelParams],
    *,
    folds: int,
    seed: int,
    val_size: float,
    evaluation: EvalConfig,
    workdir: Path,
    settings: Settings,
    augmentation: AugmentConfig | None = None,
    calibration: CalibrationConfig | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Each family's run on each fold (see the module's docstring), by family.

    Members of an ensemble are listed before it so that it is assembled from them; each fold's models
    are deleted once the fold is scored.
    """
    augmentation = augmentation or AugmentConfig()
    calibration = calibration or CalibrationConfig()
    ordered = sorted(families, key=lambda p: isinstance(p, EnsembleParams))
    runs: dict[str, list[dict[str, Any]]] = {p.family: [] for p in ordered}
    for fold, (rest, held_out) in enumerate(stratified_folds(dataset, folds, seed)):
        fold_seed = seed + fold
        train, val = split_stage(rest, DataConfig(val_size=val_size, seed=fold_seed))
        train_rows = augment_train(train, augmentation, seed=fold_seed)
        refit_rows = augment_train(rest, augmentation, seed=fold_seed)
        fold_dir = workdir / f"fold-{fold}"
        trained: dict[str, Trained] = {}
        for params in ordered:
            model = trained[params.family] = train_family(
                params,
                trained,
                train=train_rows,
                val=val,
                refit_rows=refit_rows,
                seed=fold_seed,
                workdir=fold_dir,
                settings=settings,
            )
            calibrate_model(model.val_model_dir, model.model_dir, val, calibration, evaluation)
            report = evaluate_stage(model.model_dir, held_out, evaluation)
            fit_s, refit_s = model.fit_seconds, model.refit_seconds
            run = {
                "fold": fold,
                "seed": fold_seed,
                "rows": {
                    "train": len(train_rows),
                    "val": len(val),
                    "refit": len(refit_rows),
                    "test": len(held_out),
                },
                "fit_seconds": round(fit_s, 3),
                "refit_seconds": round(refit_s, 3),
                "training_seconds": round(fit_s + refit_s, 3),
                "best_epoch": read_model_info(model.val_model_dir).get("training", {}).get("best_epoch"),
                "calibrated": calibration.enabled,
                "f1": report["overall"]["f1"],
                "macro_f1": report["overall"]["macro_f1"],
                "precision": report["overall"]["precision"],
                "recall": report["overall"]["recall"],
                "accuracy": report["overall"]["accuracy"],
                "f1_ci95": report["overall"].get("f1_ci95"),
                "per_class_f1": {label: scores["f1"] for label, scores in report["per_class"].items()},
                "ece": report["calibration"]["ece"] if "calibration" in report else None,
                "abstained": report["overall"].get("abstained", 0),
            }
            runs[params.family].append(run)
            print(
                f"fold {fold + 1}/{folds} {params.family:<11} weighted F1 {run['f1']:.4f} "
                f"macro F1 {run['macro_f1']:.4f} (trained in {fit_s + refit_s:.1f} s)",
                flush=True,
            )
        shutil.rmtree(fold_dir, ignore_errors=True)
    return runs


# ------------------------------------------------------------------------------------------ summary
def spread(values: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), min and max."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def summarize(family: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One family's folds: mean and spread of each metric, its worst class, the folds themselves."""
    labels = list(runs[0]["per_class_f1"])
    per_class = {label: spread([r["per_class_f1"][label] for r in runs]) for label in labels}
    worst = min(labels, key=lambda label: per_class[label]["mean"])
    eces = [r["ece"] for r in runs if r["ece"] is not None]
    return {
        "family": family,
        "folds": len(runs),
        "f1": spread([r["f1"] for r in runs]),
        "macro_f1": spread([r["macro_f1"] for r in runs]),
        "per_class_f1": per_class,
        "worst_class": {"label": worst, **per_class[worst]},
        "ece": spread(eces) if eces else None,
        "abstained": sum(r["abstained"] for r in runs),
        "training_seconds": spread([r["training_seconds"] for r in runs]),
        "runs": runs,
    }


def print_table(results: list[dict[str, Any]]) -> None:
    """Mean ± std and range of each family's weighted and macro F1, per-class means, the rest."""
    labels = list(results[0]["per_class_f1"]) if results else []
    header = (
        f"{'family':<11} {'weighted F1':>15} {'range':>13} {'macro F1':>15} "
        + " ".join(f"{label[:10]:>10}" for label in labels)
        + f" {'ECE':>6} {'abstained':>9} {'train s':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        f1, macro = r["f1"], r["macro_f1"]
        ece = r["ece"]["mean"] if r["ece"] else float("nan")
        print(
            f"{r['family']:<11} {f1['mean']:.4f} ± {f1['std']:.4f} [{f1['min']:.3f},{f1['max']:.3f}] "
            f"{macro['mean']:.4f} ± {macro['std']:.4f} "
            + " ".join(f"{r['per_class_f1'][label]['mean']:>10.3f}" for label in labels)
            + f" {ece:>6.3f} {r['abstained']:>9} {r['training_seconds']['mean']:>7.1f}"
        )
    print("\nWeighted F1 per fold:")
    for r in results:
        print(f"  {r['family']:<11} " + " ".join(f"{run['f1']:.4f}" for run in r["runs"]))


# ------------------------------------------------------------------------------------------- command
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; ``--output`` defaults to crossval.json, or crossval-RECIPE.json when augmenting."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--engine", choices=["local", "ray"], default="local", help="transformer training")
    parser.add_argument(
        "--augment",
        choices=RECIPES,
        default=None,
        help="training-row augmentation recipe (default: configs/pipeline.yaml's)",
    )
    parser.add_argument("--fraction", type=float, default=None, help="share of rows augmented")
    parser.add_argument("--config", type=Path, default=PIPELINE_CONFIG, help="pipeline config YAML")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error(f"--folds must be at least 2, got {args.folds}")
    return args


def augmentation_of(args: argparse.Namespace, cfg: PipelineConfig) -> AugmentConfig:
    """The pipeline config's augmentation with the command line's overrides."""
    update = {"recipe": args.augment, "fraction": args.fraction}
    return cfg.augmentation.model_copy(update={k: v for k, v in update.items() if v is not None})


def output_path(args: argparse.Namespace, augmentation: AugmentConfig) -> Path:
    """``--output``, else crossval.json, crossval-RECIPE.json for an augmented recipe, and the config's
    name first for another config than the pipeline's (crossval-pipeline-fast.json)."""
    if args.output is not None:
        return Path(args.output)
    name = augmentation_name(augmentation)
    return results_path("crossval", args.config, *([] if name == NO_AUGMENTATION else [name]))


def augmentation_name(augmentation: AugmentConfig) -> str:
    """The name a result and its page section carry: the recipe (``none``, ``short``)."""
    return augmentation.recipe


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = pipeline_recipe(args.engine, args.config)
    augmentation = augmentation_of(args, cfg)
    args.output = output_path(args, augmentation)
    by_family = {p.family: p for p in cfg.models}
    missing = [f for f in args.families if f not in by_family]
    if missing:
        raise SystemExit(f"{args.config}: no model of the families {missing} in 'models'")
    calibration = cfg.calibration
    workdir = Path(tempfile.mkdtemp(prefix="tagops-crossval-"))
    load_before = os.getloadavg()
    try:
        data, dataset, _ = load_real_data(workdir / "data")
        runs = cross_validate(
            dataset,
            [by_family[f] for f in args.families],
            folds=args.folds,
            seed=args.seed,
            val_size=cfg.data.val_size,
            evaluation=cfg.evaluation,
            workdir=workdir,
            settings=Settings(home=workdir / "home"),  # Ray Train keeps its checkpoints under it
            augmentation=augmentation,
            calibration=calibration,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = [summarize(family, family_runs) for family, family_runs in runs.items()]

    print(
        f"\n{args.folds}-fold cross-validation of dataset.csv (n={len(dataset)}), seed {args.seed}, "
        f"augmentation {augmentation_name(augmentation)}, calibration "
        f"{'on' if calibration.enabled else 'off'}; "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} before / {os.getloadavg()[0]:.1f} after"
    )
    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "crossval",
                "folds": args.folds,
                "seed": args.seed,
                "dataset_rows": len(dataset),
                "dataset_sha256": data.dataset_sha256,
                "val_size": cfg.data.val_size,
                "augment": augmentation_name(augmentation),
                "augmentation": augmentation.model_dump(mode="json"),
                "calibration": calibration.model_dump(mode="json"),
                "transformer_engine": args.engine,
                "config": config_name(args.config),
                "models": {p.family: p.model_dump(mode="json") for p in cfg.models if p.family in runs},
                "results": results,
                "load_average_before_after": [load_before[0], os.getloadavg()[0]],
                **stamp(),
            },
            indent=2,
        )
    )
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
