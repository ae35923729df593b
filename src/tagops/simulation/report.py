"""What the simulation measured: F1 with intervals, the before/after margin, and the tables it prints."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tagops.settings import Settings
    from tagops.simulation.client import Sent

logger = logging.getLogger(__name__)


def f1_with_ci(truth: list[str], predicted: list[str], *, samples: int, seed: int) -> dict[str, Any]:
    """Weighted F1 and its bootstrap 95 % interval."""
    from tagops.metrics import bootstrap_ci, weighted_f1

    return {
        "f1": weighted_f1(truth, predicted),
        "f1_ci95": bootstrap_ci(truth, predicted, samples=samples, seed=seed),
    }


def before_after(
    truth: list[str], old: list[str], new: list[str], *, samples: int, seed: int
) -> dict[str, Any]:
    """Old vs new champion on the same items: F1 of each with its interval, the margin and its interval."""
    from tagops.metrics import bootstrap_f1_difference

    before = f1_with_ci(truth, old, samples=samples, seed=seed)
    after = f1_with_ci(truth, new, samples=samples, seed=seed)
    return {
        "rows": len(truth),
        "old": before,
        "new": after,
        "margin": after["f1"] - before["f1"],
        "margin_ci95": bootstrap_f1_difference(truth, old, new, samples=samples, seed=seed),
    }


def window_row(name: str, kind: str, sent: Sent, summary: dict[str, Any]) -> dict[str, Any]:
    """One window's row of the result: rows sent, the alarm and each test's outcome."""
    adjusted = [t["p_adjusted"] for t in summary.get("tests", []) if t.get("p_adjusted") is not None]
    return {
        "name": name,
        "kind": kind,
        "since": sent.since.isoformat(),
        "until": sent.until.isoformat(),
        "rows": summary["num_rows"],
        "alarm": summary["alarm"],
        "drift_alarm": summary["drift_alarm"],
        "drifted": summary["drifted"],
        "min_p_adjusted": min(adjusted) if adjusted else None,
        "oov_token_rate": (summary.get("window") or {}).get("oov_token_rate"),
        "summary": summary,
    }


def shadow_agreement(sim: Settings, shadow_window: Sent, final: Sent) -> dict[str, Any]:
    """How often the challenger's shadow answers equal what it served once promoted (same items)."""
    from tagops.predlog.log import PredictionLog

    with PredictionLog.from_config(None, sim) as log:
        shadow = log.reader.read_shadow_tags(shadow_window.prediction_ids)
    pairs = [
        (shadow[pid], served)
        for pid, served in zip(shadow_window.prediction_ids, final.tags, strict=True)
        if pid in shadow
    ]
    return {"rows": len(pairs), "agreement": float(np.mean([a == b for a, b in pairs])) if pairs else None}


def rich_console() -> Any:
    """A rich console on stderr (stdout carries the JSON result)."""
    from rich.console import Console

    return Console(stderr=True, width=110)


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "" if value is None else format(float(value), spec)


def _ci(values: list[float] | None) -> str:
    return "" if not values else f"{values[0]:.3f} to {values[1]:.3f}"


def print_tables(result: dict[str, Any]) -> None:
    """Print the windows table and the before/after table."""
    from rich.table import Table

    console = rich_console()
    windows = Table(title="windows")
    for column in ("window", "kind", "rows", "alarm", "drifted (Holm, p < alpha)", "min adj. p", "OOV rate"):
        windows.add_column(column)
    for w in result.get("windows", []):
        windows.add_row(
            w["name"],
            w["kind"],
            str(w["rows"]),
            "ALARM" if w["alarm"] else "-",
            ", ".join(w["drifted"]),
            _fmt(w["min_p_adjusted"], ".2g"),
            _fmt(w["oov_token_rate"], ".3f"),
        )
    console.print(windows)
    comparison = result.get("before_after")
    if comparison:
        table = Table(
            title=f"before/after on the shifted holdout ({comparison['served']['rows']} rows): "
            f"v{comparison['old_version']} -> v{comparison['new_version']}"
        )
        for column in ("answers", "old F1", "old 95% CI", "new F1", "new 95% CI", "margin", "margin 95% CI"):
            table.add_column(column)
        for name in ("served", "top_answer"):
            c = comparison[name]
            table.add_row(
                name,
                _fmt(c["old"]["f1"]),
                _ci(c["old"]["f1_ci95"]),
                _fmt(c["new"]["f1"]),
                _ci(c["new"]["f1_ci95"]),
                _fmt(c["margin"], "+.4f"),
                _ci(c["margin_ci95"]),
            )
        console.print(table)
    canary = result.get("canary")
    if canary:
        report = canary["report"]
        console.print(
            f"canary at {report['weight']:g} %: {canary['canary_items']} of {canary['items']} items answered "
            f"by v{report['canary']['version']}; F1 canary {_fmt(report['canary']['f1'])} vs champion "
            f"{_fmt(report['champion']['f1'])} (difference {_fmt(report['f1_difference'], '+.4f')} "
            f"{_ci(report['f1_difference_ci95'])}); policy: {canary['decision']['action']}; rollout "
            f"{(canary.get('ended') or {}).get('state', 'active')}"
        )
    console.print(f"rows: {result.get('rows')}")
    console.print(f"verdict: {result.get('verdict')}")
