"""benchmarks/report.py: docs/performance.md and the README's table from results JSON of each shape."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STAMP = {
    "measured_at": "2026-12-01T10:20:30+00:00",
    "command": "python benchmarks/X.py",
    "machine": {"cpus": 2, "processor": "Test CPU 9000", "python": "3.11.7", "platform": "Linux-test"},
}


def load_report() -> ModuleType:
    if str(ROOT / "benchmarks") not in sys.path:  # report.py imports its sections as a script does
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("perf_report", ROOT / "benchmarks" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


report = load_report()


def stamped(command: str, **data: Any) -> dict[str, Any]:
    return {**data, **STAMP, "command": command}


ROBUST_SLICES = ("holdout", "title_only", "terse", "challenge", "challenge.package")


def robustness_medians(f1: float, worst: str) -> dict[str, Any]:
    """The robustness summary benchmarks/quality.py writes per family and recipe."""
    medians = {name: round(f1 - 0.01 * i, 4) for i, name in enumerate(ROBUST_SLICES)}
    medians[worst] = round(f1 - 0.3, 4)
    return {
        "robustness_f1_median": medians,
        "robustness_macro_f1_median": {name: value - 0.01 for name, value in medians.items()},
        "robustness_worst_slice": worst,
    }


def quality_run(family: str, recipe: str, f1: float, fit: float) -> dict[str, Any]:
    per_class = {"computer-vision": f1, "mlops": f1 - 0.02, "natural-language-processing": f1, "other": f1}
    robust = {
        ("rules", "refit"): robustness_medians(f1, "terse"),
        ("linear", "refit"): robustness_medians(f1, "challenge.package"),
        ("ensemble", "split"): robustness_medians(0.5, "title_only"),
    }
    return {
        **robust.get((family, recipe), {}),
        "family": family,
        "recipe": recipe,
        "f1_median": f1,
        "f1_min": f1 - 0.005,
        "f1_max": f1 + 0.005,
        "f1_ci95_of_median_seed": [f1 - 0.03, f1 + 0.02],
        "precision_median": f1 + 0.001,
        "recall_median": f1 - 0.001,
        "macro_f1_median": f1 - 0.01,
        "per_class_f1_median": per_class,
        "min_class_f1_median": f1 - 0.02,
        "fit_seconds_median": fit,
        "runs": [],
    }


# As each benchmark script writes them (see benchmarks/*.py), with the shared stamp.
QUALITY = stamped(
    "python benchmarks/quality.py",
    seeds=[1234, 42, 7],
    holdout_rows=191,
    results=[
        quality_run("rules", "refit", 0.8808, 0.1),
        quality_run("linear", "refit", 0.9262, 2.0),
        quality_run("transformer", "refit", 0.9482, 151.0),
        quality_run("ensemble", "refit", 0.9641, 152.0),
        quality_run("ensemble", "split", 0.9601, 150.0),
    ],
    reference={"SciBERT fine-tuned (GPU)": 0.905, "rule-based (older split)": 0.29},
    challenge_rows=40,
    robustness_seed=1234,
    robustness_transforms={"title_only": "The title alone.", "terse": "A package name and one short line."},
    cpus=2,
    load_average_before_after=[0.5, 1.0],
    transformer_engine="ray",
    time="2026-12-01T10:20:30",
)
SERVE_LINEAR = stamped(
    "python benchmarks/serve.py --family linear",
    benchmark="serve",
    family="linear",
    results=[
        {
            "engine": "raw",
            "concurrency": 1,
            "requests": 1000,
            "errors": 0,
            "p50_ms": 0.69,
            "p99_ms": 1.2,
            "mean_ms": 0.7,
            "requests_per_s": 1400.0,
            "statuses": {"ok": 1000},
        },
        {"engine": "raw batched (32)", "concurrency": 0, "requests_per_s": 2100.5},
        {
            "engine": "ray",
            "concurrency": 1,
            "requests": 1000,
            "errors": 0,
            "p50_ms": 2.74,
            "p99_ms": 5.0,
            "mean_ms": 2.9,
            "requests_per_s": 350.0,
            "statuses": {"200": 1000},
        },
        {
            "engine": "ray",
            "concurrency": 32,
            "requests": 1000,
            "errors": 0,
            "p50_ms": 40.0,
            "p99_ms": 90.0,
            "mean_ms": 45.0,
            "requests_per_s": 630.4,
            "statuses": {"200": 1000},
        },
    ],
    paired_concurrency_1=[
        {
            "engine": "ray",
            "blocks": 5,
            "requests": 1000,
            "raw_p50_ms": 0.7,
            "engine_p50_ms": 2.81,
            "added_p50_ms": 2.11,
        },
    ],
    paired_concurrency_32=[],
    bar={
        "ray_added_p50_ms_at_c1": 2.05,
        "ray_added_p50_ms_at_c1_paired": 2.11,
        "limit_ms": 5.0,
        "pass": True,
    },
    machine_before={"cpus": 2, "time": "2026-12-01 10:00:00 UTC"},
)
SERVE_TRANSFORMER = stamped(
    "python benchmarks/serve.py --family transformer --engines raw ray --levels 1 32",
    benchmark="serve",
    family="transformer",
    results=[{"engine": "raw batched (32)", "concurrency": 0, "requests_per_s": 212.8}],
    paired_concurrency_1=[],
    paired_concurrency_32=[
        {
            "engine": "ray",
            "blocks": 5,
            "concurrency": 32,
            "raw_batch_items": 32,
            "raw_batched_items_per_s": 212.8,
            "max_batch_items": 64,
            "raw_max_batch_items_per_s": 230.0,
            "engine_requests_per_s": 189.8,
            "ratio": 0.892,
            "ratio_to_max_batch": 0.825,
        },
    ],
    bar={
        "ray_p50_ratio_at_c1": 1.262,
        "p50_ratio_limit": 1.3,
        "ray_c32_throughput_ratio_to_raw_batched": 0.892,
        "throughput_ratio_limit": 0.8,
        "pass": True,
    },
)
RESILIENCE = stamped(
    "python benchmarks/serve_resilience.py",
    benchmark="serve_resilience",
    config={"num_replicas": 2, "num_cpus": 1.0},
    log={"requests": 10000, "errors": 0, "rows_in_log": 10000, "pass": True},
    kill={
        "requests": 31590,
        "errors": 16,
        "failed_share": 0.00051,
        "last_failure_after_kill_s": 1.2,
        "replacement_serving_after_s": 6.35,
        "pass": True,
    },
    reload={"requests": 26587, "errors": 0, "reload_seconds": 3.1, "versions_after": [2], "pass": True},
    log_after_shutdown={"successful_requests": 68161, "rows": 68161},
)
FUZZ = stamped(
    "python benchmarks/serve_fuzz.py",
    benchmark="serve_fuzz",
    engine="ray",
    requests=1482,
    server_errors=[],
    by_operation_and_status=[
        {"operation": "POST /v1/predict", "status": 200, "responses": 700},
        {"operation": "POST /v1/predict", "status": 422, "responses": 500},
        {"operation": "GET /healthz", "status": 200, "responses": 282},
    ],
    **{"pass": True},
)
HOSTILE = stamped(
    "python benchmarks/serve_hostile.py",
    benchmark="serve_hostile",
    family="linear",
    rounds=3,
    block_seconds=4.0,
    bars={"hostile_max_s": 2.0, "healthz_max_ms": 1000, "p99_ratio": 3.0},
    rows=[
        {
            "engine": "ray",
            "kind": "NFKC x18 (U+FDFA)",
            "body_bytes": 1020589,
            "items": 17,
            "hostile_p50_s": 0.219,
            "hostile_max_s": 0.273,
            "cost_vs_ordinary": 0.59,
            "healthz_max_ms": 64.6,
            "quiet_p99_ms": 25.96,
            "hostile_block_p99_ms": 59.65,
            "p99_ratio": 2.3,
            "p99_ratio_spread": [2.26, 2.69],
            "pass": True,
        }
    ],
    **{"pass": True},
)
OVERLOAD = stamped(
    "python benchmarks/serve_overload.py",
    benchmark="serve_overload",
    bars={"statuses": "200 or 503 only", "rss_ratio": 1.5},
    rows=[
        {
            "engine": "uvicorn",
            "concurrency": 256,
            "requests": 23590,
            "answered_200": 7780,
            "answered_503": 15810,
            "other": 0,
            "p99_ms": 506.01,
            "idle_rss_mb": 310.9,
            "peak_rss_mb": 318.8,
            "rss_ratio": 1.025,
            "pass": True,
        }
    ],
    **{"pass": True},
)
BATCH = stamped(
    "python benchmarks/batch_predict.py",
    rows=10000,
    cpus=2,
    model="all-MiniLM-L6-v2, untrained head",
    results=[
        {
            "path": "in-process raw",
            "seconds": 80.0,
            "rows_per_s": 125.0,
            "note": "predict_proba",
            "vs_raw": 1.0,
        },
        {"path": "ray data 2x1", "seconds": 100.0, "rows_per_s": 100.0, "note": "end to end", "vs_raw": 0.8},
    ],
    tags_equal=10000,
)
DRIFT = stamped(
    "python benchmarks/drift.py",
    seed=1234,
    holdout_rows=191,
    seconds=60.0,
    table=[
        {
            "scenario": "in-dist (resampled holdout)",
            "windows": 20,
            "alarms": 0,
            "min_p_adjusted": 0.2,
            "median_min_p_adjusted": 0.9,
            "drifted_first_window": [],
        },
        {
            "scenario": "shift: new vocabulary",
            "windows": 1,
            "alarms": 1,
            "min_p_adjusted": 6e-14,
            "median_min_p_adjusted": 6e-14,
            "drifted_first_window": ["oov", "embedding"],
        },
    ],
    scenarios={},
)
SIMULATE = stamped(
    "python benchmarks/simulate.py --family linear",
    family="linear",
    wall_s=163.2,
    timings_s={"initial_champion": 46.0, "service_start": 8.0, "retrain": 48.0},
    windows=[
        {
            "name": "in-1",
            "kind": "in-distribution",
            "rows": 200,
            "alarm": False,
            "drifted": [],
            "min_p_adjusted": 1.0,
            "oov_token_rate": 0.11,
        },
        {
            "name": "shift-1",
            "kind": "shifted",
            "rows": 200,
            "alarm": True,
            "drifted": ["oov"],
            "min_p_adjusted": 9e-73,
            "oov_token_rate": 0.93,
        },
    ],
    before_after={
        "old_version": 1,
        "new_version": 2,
        "served": {
            "rows": 191,
            "old": {"f1": 0.297, "f1_ci95": [0.226, 0.365]},
            "new": {"f1": 0.792, "f1_ci95": [0.739, 0.838]},
            "margin": 0.495,
            "margin_ci95": [0.412, 0.579],
        },
    },
    rows={
        "items_sent": 1182,
        "prediction_rows": 1182,
        "feedback_accepted": 996,
        "feedback_rows": 996,
        "shadowed_items_sent": 191,
        "shadow_rows": 191,
        "failed_requests": 0,
    },
    verdict={
        "in_distribution_false_alarms": 0,
        "first_shifted_window_alarm": True,
        "promoted": True,
        "reloaded_to_new_champion": True,
        "improved": True,
        "no_row_lost": True,
    },
)


def crossval_family(family: str, f1: float, worst: str, seconds: float) -> dict[str, Any]:
    folds = [f1 - 0.02, f1, f1 + 0.02]
    per_class = {
        "computer-vision": f1 + 0.01,
        "mlops": f1 - 0.1,
        "natural-language-processing": f1,
        "other": f1,
    }
    spread = {"mean": f1, "std": 0.02, "min": folds[0], "max": folds[-1]}
    return {
        "family": family,
        "folds": len(folds),
        "f1": spread,
        "macro_f1": {**spread, "mean": f1 - 0.015, "std": 0.025},
        "per_class_f1": {k: {**spread, "mean": v} for k, v in per_class.items()},
        "worst_class": {"label": worst, **spread, "mean": f1 - 0.1, "std": 0.08},
        "ece": {**spread, "mean": 0.11},
        "abstained": 0,
        "training_seconds": {**spread, "mean": seconds},
        "runs": [{"fold": i, "f1": v} for i, v in enumerate(folds)],
    }


def crossval_result(augment: str, linear_f1: float) -> dict[str, Any]:
    suffix = "" if augment == "none" else f" --augment {augment}"
    return stamped(
        f"python benchmarks/crossval.py --families rules linear{suffix}",
        benchmark="crossval",
        folds=3,
        seed=1234,
        dataset_rows=764,
        augment=augment,
        calibration={"enabled": augment != "none"},
        transformer_engine="local",
        config="configs/pipeline.yaml",
        results=[
            crossval_family("rules", 0.8512, "mlops", 0.14),
            crossval_family("linear", linear_f1, "mlops", 22.3),
        ],
    )


def spread(median: float, low: float, high: float) -> dict[str, float]:
    return {"median": median, "min": low, "max": high}


SERVE_DEFAULTS = stamped(
    "python benchmarks/serve.py --as-built",
    benchmark="serve-defaults",
    model={
        "uri": "models:/tagops@champion",
        "version": 4,
        "family": "ensemble",
        "members": ["transformer", "linear"],
    },
    rounds=3,
    blocks_per_start=2,
    summary={
        "uvicorn": {
            "cold_start_s": spread(4.1, 3.4, 4.6),
            "p50_ms": spread(14.0, 13.8, 17.9),
            "p50_ratio_to_raw": spread(1.22, 1.2, 1.28),
            "requests_per_s": spread(144.8, 142.1, 150.2),
            "throughput_ratio_to_raw": spread(0.88, 0.83, 0.92),
        },
        "mlflow": {
            "cold_start_s": spread(9.9, 9.5, 10.4),
            "p50_ms": spread(19.6, 19.0, 21.0),
            "p50_ratio_to_raw": spread(1.7, 1.6, 1.8),
            "requests_per_s": spread(48.7, 47.0, 50.0),
            "throughput_ratio_to_raw": spread(0.3, 0.29, 0.31),
        },
    },
    bar={
        "uvicorn": {
            "cold_start_s": {"value": 4.1, "bar": "<= 5", "met": True},
            "throughput_ratio_to_mlflow": {"value": 2.97, "bar": ">= 2.5", "met": True},
        }
    },
)


def lifecycle_row(engine: str, target: str, exit_median: float, exit_max: float) -> dict[str, Any]:
    return {
        "engine": engine,
        "signal_to": target,
        "cycles": 10,
        "ready": 10,
        "exit_0": 10,
        "exit_s_median": exit_median,
        "exit_s_max": exit_max,
        "with_processes_left": 0,
        "with_port_left": 0,
        "dropped_in_flight": 0,
        "answered": 1200,
        "log_rows": 2410,
        "log_rows_of_answered": "2410/2400",
        "pass": True,
    }


LIFECYCLE = stamped(
    "python benchmarks/serve_lifecycle.py",
    benchmark="serve_lifecycle",
    cycles_per_engine=20,
    clients=4,
    exit_bar_s=10.0,
    summary=[lifecycle_row("uvicorn", "process", 1.4, 1.6), lifecycle_row("ray", "group", 5.3, 6.1)],
)
CANARY = stamped(
    "python benchmarks/serve_canary.py",
    benchmark="serve_canary",
    engines=[
        {
            "engine": "uvicorn",
            "weight": 10.0,
            "requests": 2000,
            "errors": 0,
            "canary_share": 0.1045,
            "share_pass": True,
            "sticky_changed": 0,
            "abort": {"requests": 3570, "failed": 0, "state": "aborted", "versions_after": [1]},
            "promote": {
                "requests": 5402,
                "failed": 0,
                "reload_current": 2,
                "versions_after": [2],
                "state": "promoted",
            },
            "pass": True,
        }
    ],
)
CROSSVAL = crossval_result("none", 0.8888)


def warehouse_build(number: int, seconds: float, created: bool) -> dict[str, Any]:
    rows = {"training_set": 764, "holdout": 191, "labeled_projects": 764, "recent_window": 0}
    return {"build": number, "seconds": seconds, "created": created, "snapshot_id": "b4c34db2", "rows": rows}


WAREHOUSE = stamped(
    "python benchmarks/warehouse.py",
    benchmark="warehouse",
    builds=[warehouse_build(1, 1.25, True), warehouse_build(2, 0.5, False), warehouse_build(3, 0.4, False)],
    summary={
        "first_s": 1.25,
        "rebuild_median_s": 0.45,
        "rebuild_min_s": 0.4,
        "rebuild_max_s": 0.5,
        "all_median_s": 0.5,
        "same_id": True,
        "snapshots_written": 1,
        "import_s": 0.2,
    },
    rows={"training_set": 764, "holdout": 191, "labeled_projects": 764, "recent_window": 0},
    bar={"max_build_s": 10.0, "pass": True},
)


def planted(seed: int, flagged: float, disagreements: float) -> dict[str, Any]:
    return {
        "noise": 0.02,
        "seed": seed,
        "planted": 15,
        "estimated_noise": 0.03,
        "flagged": {"listed": 24, "precision": flagged, "recall": 0.8},
        "with_disagreements": {"listed": 93, "precision": disagreements, "recall": 1.0},
    }


LABEL_AUDIT = stamped(
    "python benchmarks/label_audit.py",
    benchmark="label_audit",
    family="linear",
    folds=5,
    files={
        "dataset.csv": {
            "rows": 764,
            "flagged": 8,
            "estimated_noise": 0.0105,
            "out_of_fold_f1": 0.9001,
            "seconds": 7.9,
        },
        "holdout.csv": {
            "rows": 191,
            "flagged": 3,
            "estimated_noise": 0.0157,
            "out_of_fold_f1": 0.8688,
            "seconds": 2.4,
        },
    },
    planted=[planted(1, 0.41, 0.16), planted(2, 0.5, 0.15)],
    planted_medians={
        "0.02": {
            "flagged": {
                "listed": 24,
                "precision": 0.455,
                "recall": 0.8,
                "precision_range": [0.41, 0.5],
                "recall_range": [0.8, 0.8],
            },
            "with_disagreements": {
                "listed": 93,
                "precision": 0.155,
                "recall": 1.0,
                "precision_range": [0.15, 0.16],
                "recall_range": [1.0, 1.0],
            },
            "estimated_noise": 0.03,
        }
    },
)
CONSOLE = stamped(
    "python benchmarks/console.py --family ensemble",
    family="ensemble",
    blocks=8,
    per_block=60,
    bar_ms=20.0,
    engines={
        "uvicorn": {
            "api_p50_ms": 16.41,
            "api_p50_spread_ms": [14.49, 33.53],
            "console_p50_ms": 15.7,
            "console_p50_spread_ms": [13.77, 16.99],
            "extra_ms": -0.97,
            "extra_spread_ms": [-17.5, 2.12],
            "met": True,
        }
    },
)


def unseen_family(family: str, shares: tuple[float, float], seen_f1: float) -> dict[str, Any]:
    topics = {
        topic: {"unseen_other_share": share, "seen_f1": seen_f1, "both_f1": 0.8, "both_other_f1": 0.5}
        for topic, share in zip(("reinforcement-learning", "time-series"), shares, strict=True)
    }
    return {
        "family": family,
        "unseen_other_share": sum(shares) / 2,
        "seen_f1": seen_f1,
        "both_f1": 0.8,
        "both_other_f1": 0.5,
        "topics": topics,
    }


UNSEEN = stamped(
    "python benchmarks/unseen_topics.py",
    benchmark="unseen_topics",
    dataset_rows=764,
    topics={"reinforcement-learning": 45, "time-series": 28},
    transformer_engine="local",
    config="configs/pipeline.yaml",
    results=[unseen_family("linear", (0.36, 0.14), 0.9158), unseen_family("ensemble", (0.29, 0.12), 0.9311)],
)
ALL = {
    "unseen_topics.json": UNSEEN,
    "label_audit.json": LABEL_AUDIT,
    "console.json": CONSOLE,
    "warehouse.json": WAREHOUSE,
    "serve_canary.json": CANARY,
    "serve_lifecycle.json": LIFECYCLE,
    "serve-defaults.json": SERVE_DEFAULTS,
    "crossval.json": CROSSVAL,
    "quality.json": QUALITY,
    "serve-linear.json": SERVE_LINEAR,
    "serve-transformer.json": SERVE_TRANSFORMER,
    "serve_resilience.json": RESILIENCE,
    "serve_fuzz.json": FUZZ,
    "serve_hostile.json": HOSTILE,
    "serve_overload.json": OVERLOAD,
    "batch_predict.json": BATCH,
    "drift.json": DRIFT,
    "simulate-linear.json": SIMULATE,
}
README = f"# tagops\n\nintro\n\n## Results\n\n{report.START}\nold table\n{report.END}\n\n## Docs\n"


def write_results(folder: Path, files: dict[str, dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data), encoding="utf-8")
    return folder


def run(tmp_path: Path, files: dict[str, dict[str, Any]], *extra: str) -> tuple[int, str, str]:
    results = write_results(tmp_path / "results", files)
    readme = tmp_path / "README.md"
    if not readme.exists():
        readme.write_text(README, encoding="utf-8")
    doc = tmp_path / "docs" / "performance.md"
    code = report.main(["--results", str(results), "--doc", str(doc), "--readme", str(readme), *extra])
    return code, doc.read_text(encoding="utf-8") if doc.exists() else "", readme.read_text(encoding="utf-8")


def test_every_benchmark_is_reported_with_date_command_machine_and_bar(tmp_path: Path) -> None:
    code, doc, _ = run(tmp_path, ALL)
    assert code == 0
    for _, title, _, _ in report.SECTIONS:
        assert f"## {title}" in doc
    # the one result not given: a family of a per-family benchmark
    assert doc.count("Not measured yet") == 1
    assert "Not measured yet: run `python benchmarks/simulate.py --family transformer`" in doc
    assert "| uvicorn | 2000 at 10 % | 10.4 % | 0 | 0 / 3570 | 0 / 5402 | v1 / v2 | pass |" in doc
    assert doc.count("- Measured: 2026-12-01 10:20 UTC") == len(ALL)
    assert (
        "- Command: `python benchmarks/serve.py --family transformer --engines raw ray --levels 1 32`" in doc
    )
    assert "- Machine: 2 CPUs, Test CPU 9000, Linux-test, Python 3.11.7" in doc
    # figures and the bars they are measured against
    assert "**0.964** (0.959–0.969)" in doc
    assert "| SciBERT fine-tuned (GPU) | 0.905 |" in doc
    assert "at most 5 ms" in doc and "+2.11 ms" in doc
    assert "1.26x" in doc and "0.89x" in doc
    assert "| raw batched (32) | – | – | – | 2100.5 items/s | – |" in doc
    assert "0.051%" in doc and "6.35 s" in doc
    assert "1,482 requests generated" in doc and "POST /v1/predict | 200: 700, 422: 500" in doc
    assert "| ray | NFKC x18 (U+FDFA) | 1,020,589 B, 17 items | 0.22 s | 0.27 s | 0.59x | 65 ms |" in doc
    assert "26.0 → 59.6 ms | 2.30x (2.26–2.69) | pass |" in doc
    assert "| uvicorn | 256 | 23,590 | 7,780 | 15,810 | 0 | 506 ms | 311 → 319 MB | 1.02x | pass |" in doc
    assert "| ray data 2x1 | 100.00 s | 100.0 | 0.80x | end to end |" in doc
    assert "| shift: new vocabulary | 1 | 1 | 6e-14 | oov, embedding | pass |" in doc
    assert "0.297 (0.226–0.365)" in doc and "+0.495 (0.412–0.579)" in doc
    assert "Model `models:/tagops@champion` (version 4, ensemble+transformer+linear); 3 rounds" in doc
    assert "| `tagops serve` (uvicorn) | 4.1 s (3.4–4.6) | 14.0 ms (13.8–17.9) | 1.22x (1.20–1.28) |" in doc
    assert "| `mlflow` | 9.9 s (9.5–10.4) |" in doc
    assert "| ray | group | 10/10 | 10/10 | 5.3 s (6.1 s) | 0 | 0 | 0 | 2410 / 2400 | pass |" in doc
    assert "| uvicorn | throughput_ratio_to_mlflow | 2.97 | >= 2.5 | pass |" in doc
    assert "| 1 | 1.25 s | `b4c34db2` | yes | 764 | 191 | 764 | 0 |" in doc
    assert "Bar: every build within 10 s and every build giving the same snapshot id: pass." in doc
    assert "First build 1.25 s; rebuilds median 0.45 s (0.40–0.50 s); snapshots written: 1;" in doc
    assert "in 8 interleaved blocks of 60 requests per page" in doc
    assert "Bar: the console adds at most 20 ms at the median: pass." in doc
    console_row = "| uvicorn | 16.4 ms (14.5 to 33.5) | 15.7 ms (13.8 to 17.0) | -1.0 ms (-17.5 to +2.1) |"
    assert console_row in doc
    assert "**fail**" not in doc


def test_unseen_topics_shows_each_withheld_topic_and_the_mean_by_family(tmp_path: Path) -> None:
    _, doc, _ = run(tmp_path, {"unseen_topics.json": UNSEEN})
    section = doc.split("## Unseen topics of `other`", 1)[1].split("\n## ", 1)[0]
    assert "(764 rows; `reinforcement-learning` 45, `time-series` 28) withheld in turn" in section
    assert (
        "| family | answered `other`: reinforcement-learning | answered `other`: time-series | mean |"
        in section
    )
    assert "| `linear` | 0.36 | 0.14 | **0.25** | 0.916 | 0.800 | 0.500 |" in section
    assert "| `ensemble` | 0.29 | 0.12 | **0.20** | 0.931 |" in section
    assert "- Command: `python benchmarks/unseen_topics.py`" in section


def test_label_audit_shows_the_real_files_and_the_planted_noise(tmp_path: Path) -> None:
    _, doc, _ = run(tmp_path, {"label_audit.json": LABEL_AUDIT})
    section = doc.split("## Label audit", 1)[1].split("\n## ", 1)[0]
    assert "the `linear` model over 5 folds scores every row out of fold" in section
    assert "| `dataset.csv` | 764 | 8 | 1.1% | 0.900 | 7.9 s |" in section
    assert "| `holdout.csv` | 191 | 3 | 1.6% | 0.869 | 2.4 s |" in section
    assert "median over 2 seeds (min–max)" in section
    assert "| 2% | flagged | 24 | 0.46 (0.41–0.50) | 0.80 (0.80–0.80) |" in section
    assert "| 2% | with `--disagreements` | 93 | 0.15 (0.15–0.16) | 1.00 (1.00–1.00) |" in section


def test_label_audit_by_another_config_follows_the_default(tmp_path: Path) -> None:
    other = {**LABEL_AUDIT, "config": "configs/audit-ensemble.yaml", "family": "ensemble"}
    _, doc, _ = run(tmp_path, {"label_audit.json": LABEL_AUDIT, "label_audit-audit-ensemble.json": other})
    section = doc.split("## Label audit", 1)[1].split("\n## ", 1)[0]
    default, rest = section.split("### config `audit-ensemble.yaml`")
    assert "`tagops data audit` as it runs unless told: the `linear` model" in default
    assert "`tagops data audit --config configs/audit-ensemble.yaml`: the `ensemble` model" in rest
    assert "- File: `benchmarks/results/label_audit-audit-ensemble.json`" in rest


def test_quality_shows_the_median_ece_of_the_seeds(tmp_path: Path) -> None:
    runs = [{"seed": seed, "ece": ece} for seed, ece in ((1234, 0.0505), (42, 0.0472), (7, 0.053))]
    results = [{**r, "runs": runs} if r["family"] == "ensemble" else r for r in QUALITY["results"]]
    _, doc, _ = run(tmp_path, {"quality.json": {**QUALITY, "results": results}})
    assert (
        "| family | recipe | weighted F1 | precision | recall | macro F1 | min class F1 | ECE | fit |" in doc
    )
    assert (
        "| `ensemble` | refit | **0.964** (0.959–0.969) | 0.965 | 0.963 | 0.954 | 0.944 | 0.051 | 152.0 s |"
        in doc
    )
    assert "| `rules` | refit | **0.881** (0.876–0.886) | 0.882 | 0.880 | 0.871 | 0.861 | – | 0.1 s |" in doc


def test_simulate_shows_the_gates_shadow_and_canary_behind_the_promotion(tmp_path: Path) -> None:
    evidence = {
        "retrain": {
            "counts": {"feedback": 100, "train": 56, "recent": 24, "pending_review": 5, "known_titles": 15},
            "reports": {
                "champion_holdout": {"f1": 0.93, "f1_ci95": [0.9, 0.96], "rows": 191},
                "challenger_holdout": {"f1": 0.925, "f1_ci95": [0.89, 0.96], "rows": 191},
                "champion_recent": {"f1": 0.31, "f1_ci95": [0.23, 0.4], "rows": 24},
                "challenger_recent": {"f1": 0.85, "f1_ci95": [0.78, 0.91], "rows": 24},
            },
            "gate": {
                "holdout": {"promote": True, "reason": "within the gate"},
                "recent": {"promote": True, "reason": "better"},
                "behaviour": {"passed": True, "failed": [], "counts": {"invariance": {"cases": 3}}},
            },
        },
        "shadow_report": {
            "comparisons": [
                {
                    "rows": 191,
                    "feedback_rows": 180,
                    "agreement": 0.4,
                    "f1": {"champion": {"f1": 0.38}, "shadow": {"f1": 0.88}},
                    "f1_margin": 0.5,
                    "f1_margin_ci95": [0.42, 0.59],
                }
            ]
        },
        "canary": {
            "report": {
                "weight": 50.0,
                "canary_share": 0.52,
                "champion": {"labelled": 96, "f1": 0.4},
                "canary": {"labelled": 104, "f1": 0.83},
            },
            "decision": {"action": "promote", "reason": "no worse"},
        },
    }
    _, doc, _ = run(tmp_path, {"simulate-linear.json": {**SIMULATE, **evidence}})
    assert (
        "| holdout gate (191 rows) | 0.930 (0.900–0.960) | 0.925 (0.890–0.960) | within the gate | pass |"
        in doc
    )
    assert (
        "| recent-window gate (24 rows) | 0.310 (0.230–0.400) | 0.850 (0.780–0.910) | better | pass |" in doc
    )
    assert "| behavioural cases | – | 3 cases | none failed | pass |" in doc
    assert (
        "| shadow (180 labelled of 191 shadowed items) | 0.380 | 0.880 | F1 margin +0.500 (0.420–0.590)"
        in doc
    )
    assert (
        "| canary at 50 % (share 52 %; 104 / 96 labelled) | 0.400 | 0.830 | promote: no worse | pass |" in doc
    )
    assert (
        "Feedback: 100 rows; 56 joined training and 24 formed the recent window; left out: 5 waiting" in doc
    )
    # a result without them shows none of it
    _, plain, _ = run(tmp_path / "plain", {"simulate-linear.json": SIMULATE})
    assert "Before the promotion" not in plain and "Feedback:" not in plain


def test_robustness_is_a_table_of_slices_by_family_with_the_worst_marked(tmp_path: Path) -> None:
    _, doc, _ = run(tmp_path, {"quality.json": QUALITY})
    lines = doc.splitlines()
    header = lines.index("| slice | what | `rules` | `linear` | `ensemble` (split) |")
    assert lines[header - 2].startswith(
        "Robustness: weighted F1 (median of the seeds; recipe `refit` unless a column names another)"
    )
    assert "transform seed 1234" in lines[header - 2] and "challenge set of 40 rows" in lines[header - 2]
    rows = lines[header + 2 : header + 2 + len(ROBUST_SLICES)]
    assert rows == [
        "| `holdout` | The holdout as-is. | 0.881 | 0.926 | 0.500 |",
        "| `title_only` | The title alone. | 0.871 | 0.916 | **0.200** (worst) |",
        "| `terse` | A package name and one short line. | **0.581** (worst) | 0.906 | 0.480 |",
        "| `challenge` | The challenge set. | 0.851 | 0.896 | 0.470 |",
        "| `challenge.package` | The challenge set, style `package`. | 0.841 | **0.626** (worst) | 0.460 |",
    ]
    assert lines[header + 2 + len(ROBUST_SLICES)] == ""
    # families measured without robustness (transformer here) get no column
    assert "`transformer` |" not in lines[header]


def test_a_quality_result_without_robustness_says_how_to_measure_it(tmp_path: Path) -> None:
    strip = ("robustness_f1_median", "robustness_macro_f1_median", "robustness_worst_slice")
    older = {
        **QUALITY,
        "results": [{k: v for k, v in r.items() if k not in strip} for r in QUALITY["results"]],
    }
    _, doc, _ = run(tmp_path, {"quality.json": older})
    assert "Robustness: not in this result; `python benchmarks/quality.py` measures it" in doc
    assert "| slice | what |" not in doc


def test_missing_results_say_how_to_measure_them(tmp_path: Path) -> None:
    code, doc, readme = run(tmp_path, {"quality.json": QUALITY})
    assert code == 0
    assert "Not measured yet: run `python benchmarks/serve_resilience.py`, then `make perf-docs`." in doc
    assert "Not measured yet: run `python benchmarks/drift.py`" in doc
    assert "| holdout weighted F1, `ensemble` | 0.964 (0.959–0.969) |" in readme
    assert "| replica killed under load | not measured yet |" in readme

    code, doc, readme = run(tmp_path / "empty", {})
    per_family = len(report.FAMILIES) - 1  # serve and simulate: one line per family
    assert code == 0 and doc.count("Not measured yet") == len(report.SECTIONS) + 2 * per_family
    assert "run `python benchmarks/serve.py --family transformer`" in doc
    assert "| holdout weighted F1, `ensemble` | not measured yet |" in readme


def test_readme_table_is_rewritten_between_the_markers_only(tmp_path: Path) -> None:
    _, _, readme = run(tmp_path, ALL)
    assert readme.startswith("# tagops\n\nintro\n\n## Results\n\n<!-- results:start -->")
    assert readme.endswith("<!-- results:end -->\n\n## Docs\n")
    assert "old table" not in readme
    assert "| Ray Serve latency added at c=1, `linear` | +2.11 ms: pass | ≤ 5 ms | 2026-12-01 |" in readme
    assert "| training time, `transformer` | 151 s |" in readme
    assert "0.297 → 0.792, margin +0.495 (0.412–0.579)" in readme


def test_check_reports_stale_files_and_writing_is_idempotent(tmp_path: Path) -> None:
    code, _, _ = run(tmp_path, ALL, "--check")
    assert code == 1
    assert run(tmp_path, ALL)[0] == 0
    assert run(tmp_path, ALL, "--check")[0] == 0
    changed = {**ALL, "drift.json": {**DRIFT, "measured_at": "2026-12-03T08:00:00+00:00"}}
    assert run(tmp_path, changed, "--check")[0] == 1


def test_results_without_a_stamp_still_render(tmp_path: Path) -> None:
    legacy = {k: v for k, v in QUALITY.items() if k not in ("measured_at", "command", "machine")}
    _, doc, _ = run(tmp_path, {"quality.json": legacy})
    assert "- Measured: 2026-12-01 10:20\n" in doc
    assert "command not recorded (default: `python benchmarks/quality.py`)" in doc
    assert "- Machine: 2 CPUs" in doc


def test_the_newest_result_of_a_family_wins(tmp_path: Path) -> None:
    older = {
        **SERVE_LINEAR,
        "measured_at": "2026-11-01T00:00:00+00:00",
        "bar": {**SERVE_LINEAR["bar"], "pass": False},
    }
    _, doc, _ = run(tmp_path, {"serve.json": older, "serve-linear.json": SERVE_LINEAR})
    assert "serve-linear.json" in doc and "serve.json" not in doc and "**fail**" not in doc


def test_the_readme_without_markers_is_refused(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# tagops\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="markers"):
        run(tmp_path, ALL)


def test_the_stamp_names_command_and_machine() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import stamp
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    result = stamp.stamp([str(ROOT / "benchmarks" / "serve.py"), "--family", "linear"])
    assert result["command"] == "python benchmarks/serve.py --family linear"
    assert set(result["machine"]) == {"cpus", "processor", "python", "platform"}
    assert result["measured_at"].endswith("+00:00")


def test_crossval_shows_each_family_and_each_augmentation_baseline_first(tmp_path: Path) -> None:
    files = {"crossval.json": CROSSVAL, "crossval-synonyms.json": crossval_result("synonyms", 0.9011)}
    _, doc, _ = run(tmp_path, files)
    section = doc[doc.index("## Cross-validation") : doc.index("## Serving latency")]
    assert section.index("### augment `none`") < section.index("### augment `synonyms`")
    assert "3-fold stratified cross-validation of dataset.csv (764 rows, seed 1234)" in section
    assert "augmentation `none`, calibration off" in section
    assert "augmentation `synonyms`, calibration on" in section
    assert (
        "| `linear` | **0.889** ± 0.020 | 0.869–0.909 | 0.874 ± 0.025 | `mlops` 0.789 ± 0.080 | 0.110 "
        "| 22.3 s |" in section
    )
    assert "| `linear` | **0.901** ± 0.020 |" in section
    assert "| `rules` | **0.851** ± 0.020 |" in section
    assert "- Command: `python benchmarks/crossval.py --families rules linear --augment synonyms`" in section
    assert "- File: `benchmarks/results/crossval-synonyms.json`" in section


def test_crossval_newest_result_of_a_variant_wins(tmp_path: Path) -> None:
    older = {**crossval_result("none", 0.5), "measured_at": "2026-11-01T00:00:00+00:00"}
    _, doc, _ = run(tmp_path, {"crossval-old.json": older, "crossval.json": CROSSVAL})
    assert doc.count("### augment `none`") == 1
    assert "**0.889**" in doc and "**0.500**" not in doc


def test_another_configs_results_stand_apart_from_the_defaults(tmp_path: Path) -> None:
    config = "configs/pipeline-fast.yaml"
    later = "2026-12-09T00:00:00+00:00"
    fast_quality = {
        **QUALITY,
        "config": config,
        "measured_at": later,
        "command": f"python benchmarks/quality.py --config {config}",
        "results": [quality_run("ensemble", "refit", 0.9111, 20.0)],
    }
    fast_crossval = {**crossval_result("none", 0.9333), "config": config, "measured_at": later}
    files = {
        "quality.json": QUALITY,
        "quality-pipeline-fast.json": fast_quality,
        "crossval.json": CROSSVAL,
        "crossval-pipeline-fast.json": fast_crossval,
    }
    _, doc, readme = run(tmp_path, files)
    quality = doc[doc.index("## Model quality") : doc.index("## Cross-validation")]
    # The default config's figures lead the section; the newer result of another config does not replace them.
    assert (
        quality.index("**0.964**")
        < quality.index("### config `pipeline-fast.yaml`")
        < quality.index("**0.911**")
    )
    assert f"- Command: `python benchmarks/quality.py --config {config}`" in quality
    crossval = doc[doc.index("## Cross-validation") : doc.index("## Warehouse build")]
    assert crossval.index("### augment `none`") < crossval.index("### config `pipeline-fast.yaml`")
    assert "**0.889**" in crossval and "**0.933**" in crossval
    assert f"the recipe of `{config}`" in crossval
    # The README's summary row is the default's ensemble.
    assert "0.964" in readme and "0.911" not in readme
