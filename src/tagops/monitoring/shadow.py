"""Champion against shadow on live traffic: ``tagops shadow report``.

``tagops shadow report [--since ISO] [--until ISO] [--output FILE] [--config MONITOR_YAML]`` joins
the champion's predictions of the window with the shadow model's answers to the same items (the
``shadow_predictions`` table, filled by a service started with ``shadow_model_uri``) and the feedback
they received, and compares the two models per shadow version: how often they agree, their confidence,
weighted F1 on the items with feedback (bootstrap intervals, and a paired interval of the margin), and
latency. Reading is read-only; the numbers are pure functions of the rows.

Latency is not measured alike: the champion's is the request's time in the service (batching wait
included), the shadow's the model's time for the batch it scored the copy in.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tagops.config import MonitorConfig
    from tagops.settings import Settings

logger = logging.getLogger(__name__)


def _quantiles(values: list[float], points: tuple[float, ...]) -> dict[str, float | None]:
    array = np.asarray(values, dtype=float)
    summary: dict[str, float | None] = {"mean": float(array.mean()) if array.size else None}
    for point in points:
        summary[f"p{round(point * 100)}"] = float(np.quantile(array, point)) if array.size else None
    return summary


def _f1_block(
    truth: list[str], predicted: list[str], *, samples: int, seed: int
) -> dict[str, float | list[float] | None]:
    from tagops.metrics import bootstrap_ci, weighted_f1

    if not truth:
        return {"f1": None, "f1_ci95": None}
    return {
        "f1": weighted_f1(truth, predicted),
        "f1_ci95": bootstrap_ci(truth, predicted, samples=samples, seed=seed),
    }


def compare_models(
    rows: list[dict[str, Any]], feedback: dict[str, str], *, bootstrap_samples: int, seed: int
) -> list[dict[str, Any]]:
    """One comparison per (champion version, shadow version) found in ``rows``.

    ``rows`` are :meth:`~tagops.predlog.reader.LogReader.read_shadow_pairs` rows; ``feedback`` maps a
    prediction id to its correct tag.
    """
    from tagops.metrics import bootstrap_f1_difference

    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model_version"], row["shadow_model_version"]), []).append(row)
    comparisons = []
    for (champion_version, shadow_version), group in sorted(groups.items(), key=lambda g: str(g[0])):
        labelled = [r for r in group if str(r["prediction_id"]) in feedback]
        truth = [feedback[str(r["prediction_id"])] for r in labelled]
        champion_tags = [str(r["tag"]) for r in labelled]
        shadow_tags = [str(r["shadow_tag"]) for r in labelled]
        champion_f1 = _f1_block(truth, champion_tags, samples=bootstrap_samples, seed=seed)
        shadow_f1 = _f1_block(truth, shadow_tags, samples=bootstrap_samples, seed=seed)
        margin = None
        if truth and champion_f1["f1"] is not None and shadow_f1["f1"] is not None:
            margin = float(shadow_f1["f1"]) - float(champion_f1["f1"])  # type: ignore[arg-type]
        comparisons.append(
            {
                "champion_version": champion_version,
                "shadow_version": shadow_version,
                "shadow_model_uri": group[0]["shadow_model_uri"],
                "rows": len(group),
                "agreement": float(np.mean([r["tag"] == r["shadow_tag"] for r in group])),
                "confidence": {
                    "champion": _quantiles([float(r["confidence"]) for r in group], (0.1, 0.5, 0.9)),
                    "shadow": _quantiles([float(r["shadow_confidence"]) for r in group], (0.1, 0.5, 0.9)),
                },
                "latency_ms": {
                    "champion": _quantiles([float(r["latency_ms"]) for r in group], (0.5, 0.95, 0.99)),
                    "shadow": _quantiles([float(r["shadow_latency_ms"]) for r in group], (0.5, 0.95, 0.99)),
                },
                "feedback_rows": len(labelled),
                "f1": {"champion": champion_f1, "shadow": shadow_f1},
                "f1_margin": margin,
                "f1_margin_ci95": bootstrap_f1_difference(
                    truth, champion_tags, shadow_tags, samples=bootstrap_samples, seed=seed
                ),
            }
        )
    return comparisons


def shadow_report(
    cfg: MonitorConfig,
    settings: Settings,
    *,
    since: datetime,
    until: datetime,
    output: Path | None = None,
) -> dict[str, Any]:
    """Compare champion and shadow over ``[since, until)`` of the prediction log; writes JSON if asked."""
    from tagops.predlog.log import PredictionLog

    with PredictionLog.from_config(cfg, settings) as log:
        log.create_tables()
        rows = log.reader.read_shadow_pairs(since=since, until=until)
        feedback = log.reader.read_trusted_feedback([str(r["prediction_id"]) for r in rows])
    report = {
        "kind": "tagops.shadow",
        "created_at": datetime.now(UTC).isoformat(),
        "since": since.isoformat(),
        "until": until.isoformat(),
        "rows": len(rows),
        "comparisons": compare_models(rows, feedback, bootstrap_samples=cfg.bootstrap_samples, seed=cfg.seed),
    }
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return report


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "" if value is None else format(float(value), spec)


def _interval(values: list[float] | None) -> str:
    return "" if not values else f"{values[0]:.3f} to {values[1]:.3f}"


def render_table(report: dict[str, Any]) -> Any:
    """A rich table of the report: one column pair per comparison."""
    from rich.table import Table

    table = Table(
        title=f"shadow report {report['since'][:19]} to {report['until'][:19]} ({report['rows']} rows)"
    )
    table.add_column("measure")
    for comparison in report["comparisons"]:
        table.add_column(f"champion v{comparison['champion_version']}", justify="right")
        table.add_column(f"shadow v{comparison['shadow_version']}", justify="right")
    if not report["comparisons"]:
        table.add_column("")
        table.add_row("no shadowed rows in this window", "")
        return table

    def row(name: str, pick: Any) -> None:
        cells = []
        for comparison in report["comparisons"]:
            cells.extend(pick(comparison))
        table.add_row(name, *cells)

    row("rows", lambda c: [str(c["rows"]), str(c["rows"])])
    row("agreement", lambda c: [_fmt(c["agreement"], ".3f"), ""])
    for key in ("mean", "p10", "p50", "p90"):
        row(
            f"confidence {key}",
            lambda c, k=key: [
                _fmt(c["confidence"]["champion"][k], ".3f"),
                _fmt(c["confidence"]["shadow"][k], ".3f"),
            ],
        )
    row("feedback rows", lambda c: [str(c["feedback_rows"]), str(c["feedback_rows"])])
    row("weighted F1", lambda c: [_fmt(c["f1"]["champion"]["f1"]), _fmt(c["f1"]["shadow"]["f1"])])
    row(
        "F1 95% CI",
        lambda c: [_interval(c["f1"]["champion"]["f1_ci95"]), _interval(c["f1"]["shadow"]["f1_ci95"])],
    )
    row("F1 margin (shadow - champion)", lambda c: ["", _fmt(c["f1_margin"], "+.4f")])
    row("margin 95% CI (paired)", lambda c: ["", _interval(c["f1_margin_ci95"])])
    for key in ("mean", "p50", "p95", "p99"):
        row(
            f"latency ms {key}",
            lambda c, k=key: [
                _fmt(c["latency_ms"]["champion"][k], ".2f"),
                _fmt(c["latency_ms"]["shadow"][k], ".2f"),
            ],
        )
    return table
