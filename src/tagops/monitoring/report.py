"""The monitoring window's HTML report: the tests' table and one plot per compared distribution.

Plots are embedded as PNG (as in ``tagops data explore``), so the report is one file to send around.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tagops.monitoring.drift import DriftReport

_REF, _WIN = "#4c72b0", "#dd8452"


def _figure_to_img(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _bucket_labels(edges: list[float], fmt: str) -> list[str]:
    labels = [f"≤{fmt.format(edges[0])}"]
    labels += [f"{fmt.format(a)}–{fmt.format(b)}" for a, b in itertools.pairwise(edges)]
    return [*labels, f">{fmt.format(edges[-1])}"]


def _paired_bars(ax: Any, labels: list[str], reference: list[float], window: list[float], title: str) -> None:
    x = np.arange(len(labels))
    ref = np.asarray(reference, dtype=float) / max(sum(reference), 1)
    win = np.asarray(window, dtype=float) / max(sum(window), 1)
    ax.bar(x - 0.2, ref, width=0.4, label="reference", color=_REF)
    ax.bar(x + 0.2, win, width=0.4, label="window", color=_WIN)
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend()


def _plots(reference: dict[str, Any], window: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: list[tuple[str, str]] = []

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ref_counts = np.asarray(reference["token_counts"]["sample"], dtype=float)
    win_counts = np.asarray(window["token_counts"], dtype=float)
    top = max(float(np.quantile(np.concatenate([ref_counts, win_counts]), 0.99)), 1.0)
    bins = np.linspace(0, top, 30).tolist()
    ax.hist(ref_counts, bins=bins, density=True, alpha=0.6, label="reference", color=_REF)
    ax.hist(win_counts, bins=bins, density=True, alpha=0.6, label="window", color=_WIN)
    ax.set_xlabel("tokens per text")
    ax.legend()
    figures.append(("Token counts", _figure_to_img(fig)))
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
    _paired_bars(
        axes[0],
        _bucket_labels(reference["length_buckets"]["edges"], "{:g}"),
        reference["length_buckets"]["counts"],
        window["length_buckets"],
        "Length buckets (tokens)",
    )
    _paired_bars(
        axes[1],
        _bucket_labels(reference["oov"]["edges"], "{:.0%}"),
        reference["oov"]["counts"],
        window["oov_buckets"],
        "Out-of-vocabulary share per text",
    )
    fig.tight_layout()
    figures.append(("Length and vocabulary", _figure_to_img(fig)))
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
    tags = sorted(set(reference["predicted_tags"]) | set(window["predicted_tags"]))
    _paired_bars(
        axes[0],
        tags,
        [reference["predicted_tags"].get(t, 0) for t in tags],
        [window["predicted_tags"].get(t, 0) for t in tags],
        "Predicted tags",
    )
    conf_bins = np.linspace(0, 1, 21)
    axes[1].hist(reference["confidence"]["sample"], bins=conf_bins, density=True, alpha=0.6, color=_REF)
    axes[1].hist(window["confidences"], bins=conf_bins, density=True, alpha=0.6, color=_WIN)
    axes[1].set_title("Confidence")
    fig.tight_layout()
    figures.append(("Predictions", _figure_to_img(fig)))
    plt.close(fig)

    stored = reference.get("embedding")
    if stored is not None and window.get("embedding") is not None and len(window["embedding"]) >= 2:
        ref_emb = np.asarray(stored["sample"], dtype=float)
        win_emb = np.asarray(window["embedding"], dtype=float)
        # Principal axes of the reference: a shift shows as the window's cloud leaving the reference's.
        centre = ref_emb.mean(axis=0)
        _, _, vt = np.linalg.svd(ref_emb - centre, full_matrices=False)
        ref_2d, win_2d = (ref_emb - centre) @ vt[:2].T, (win_emb - centre) @ vt[:2].T
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.scatter(ref_2d[:, 0], ref_2d[:, 1], s=8, alpha=0.6, label="reference", color=_REF)
        ax.scatter(win_2d[:, 0], win_2d[:, 1], s=8, alpha=0.6, label="window", color=_WIN)
        ax.set_title(f"Embeddings ({stored['embedder']}), reference principal axes")
        ax.legend()
        figures.append(("Embeddings", _figure_to_img(fig)))
        plt.close(fig)
    return figures


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "" if value is None else format(value, spec)


def render_monitor_report(
    report: DriftReport, reference: dict[str, Any], window: dict[str, Any], *, title: str
) -> str:
    """The HTML page of one monitoring window."""
    verdict = "ALARM" if report.alarm else "no alarm"
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p><b>{verdict}</b>: {report.num_rows} rows; drift alarm {report.drift_alarm} "
        f"({html.escape(', '.join(report.drifted()) or 'no test')}), performance alarm "
        f"{report.performance_alarm}; {report.correction} correction at alpha {report.alpha}.</p>",
    ]
    if report.skipped:
        parts.append(f"<p>Tests skipped: {html.escape(report.skipped)}</p>")
    rows = "".join(
        f"<tr><td>{html.escape(t.name)}</td><td>{t.kind}</td><td>{html.escape(t.method)}</td>"
        f"<td>{_fmt(t.statistic)}</td><td>{_fmt(t.p_value)}</td><td>{_fmt(t.p_adjusted)}</td>"
        f"<td>{'DRIFT' if t.drift else ''}{html.escape(t.skipped or '')}</td></tr>"
        for t in report.tests
    )
    parts.append(
        "<h2>Tests</h2><table><tr><th>test</th><th>kind</th><th>method</th><th>statistic</th>"
        f"<th>p</th><th>p adjusted</th><th></th></tr>{rows}</table>"
    )
    perf = report.performance or {}
    ci = perf.get("f1_ci95")
    parts.append(
        "<h2>Performance on feedback</h2>"
        f"<p>{perf.get('feedback_rows', 0)} rows with feedback; weighted F1 {_fmt(perf.get('f1'), '.4f')}"
        f"{f' (95% CI {ci[0]:.3f}-{ci[1]:.3f})' if ci else ''}; holdout F1 "
        f"{_fmt(perf.get('holdout_f1'), '.4f')}. {html.escape(perf.get('skipped', ''))}</p>"
    )
    if window["num_rows"]:
        for heading, image in _plots(reference, window):
            parts += [f"<h2>{html.escape(heading)}</h2>", image]
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:4px 10px;text-align:left}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_monitor_report(
    report: DriftReport, reference: dict[str, Any], window: dict[str, Any], output: Path, *, title: str
) -> Path:
    """Render and write the HTML report."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_monitor_report(report, reference, window, title=title), encoding="utf-8")
    return output
