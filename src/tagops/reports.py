"""Writing an evaluation report to files: the JSON ``tagops evaluate`` and registration write, and its plots.

The report itself is computed in :mod:`tagops.metrics` (pure); this module only draws and writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tagops.metrics import EvalReport


def save_plots(report: EvalReport, output_dir: Path, *, prefix: str = "") -> list[Path]:
    """Confusion matrix, per-class scores and reliability diagram as PNG files; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    labels = report["confusion_matrix"]["labels"]
    matrix = np.array(report["confusion_matrix"]["matrix"])

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black"
        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    paths.append(output_dir / f"{prefix}confusion_matrix.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.27
    for k, metric in enumerate(("precision", "recall", "f1")):
        values = [float(report["per_class"][label][metric]) for label in labels]  # type: ignore[literal-required]
        ax.bar(np.arange(len(labels)) + (k - 1) * width, values, width, label=metric)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    ax.set_title("Per-class scores")
    fig.tight_layout()
    paths.append(output_dir / f"{prefix}per_class.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    bins = report["calibration"]["bins"]
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label="as served")
    title = f"Reliability (ECE {report['calibration']['ece']:.3f}"
    if "raw" in report:
        raw_bins = report["raw"]["calibration"]["bins"]
        ax.plot([b["confidence"] for b in raw_bins], [b["accuracy"] for b in raw_bins], "s:", label="raw")
        title += f", raw {report['raw']['calibration']['ece']:.3f}"
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title + ")")
    ax.legend()
    fig.tight_layout()
    paths.append(output_dir / f"{prefix}reliability.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def write_report(report: EvalReport, output: Path) -> list[Path]:
    """Write the JSON report and its plots next to it; returns every file written."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, sort_keys=True), encoding="utf-8")
    return [output, *save_plots(report, output.parent, prefix=f"{output.stem}_")]
