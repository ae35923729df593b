"""Exploratory report: class balance, text length per class, top terms per class, as one HTML file.

``tagops data explore [--data PATH] [--output FILE.html]``. Plots are embedded as PNG, so the report is a
single self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagops.data.clean import build_text, clean_texts

if TYPE_CHECKING:
    import pandas as pd


def summarize(frame: pd.DataFrame, *, top_terms: int = 15) -> dict[str, Any]:
    """Counts, length statistics and frequent terms per class (pure; the report renders this)."""
    texts = [build_text(t, d) for t, d in zip(frame["title"], frame["description"], strict=True)]
    words = [len(t.split()) for t in texts]
    cleaned = clean_texts(texts, remove_stopwords=True)
    summary: dict[str, Any] = {"num_rows": len(frame), "classes": {}}
    for label in sorted(frame["tag"].unique()):
        idx = [i for i, tag in enumerate(frame["tag"]) if tag == label]
        lengths = sorted(words[i] for i in idx)
        terms = Counter(token for i in idx for token in set(cleaned[i].split()) if len(token) > 1)
        summary["classes"][label] = {
            "count": len(idx),
            "share": len(idx) / len(frame),
            "words_median": lengths[len(lengths) // 2],
            "words_min": lengths[0],
            "words_max": lengths[-1],
            "lengths": lengths,
            "top_terms": terms.most_common(top_terms),
        }
    return summary


def _figure_to_img(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def render_report(summary: dict[str, Any], *, title: str) -> str:
    """The HTML page for a summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = summary["classes"]
    labels = list(classes)
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{summary['num_rows']} rows, {len(labels)} classes.</p>"]

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(labels, [classes[lab]["count"] for lab in labels], color="#4c72b0")
    ax.set_title("Class balance")
    ax.tick_params(axis="x", rotation=20)
    parts += ["<h2>Class balance</h2>", _figure_to_img(fig)]
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.boxplot([classes[lab]["lengths"] for lab in labels], tick_labels=labels)
    ax.set_ylabel("words in title + description")
    ax.set_title("Text length per class")
    ax.tick_params(axis="x", rotation=20)
    parts += ["<h2>Text length per class</h2>", _figure_to_img(fig)]
    plt.close(fig)

    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 4.5))
    for ax, label in zip(list(getattr(axes, "flat", [axes])), labels, strict=True):
        terms = classes[label]["top_terms"][::-1]
        ax.barh([t for t, _ in terms], [c for _, c in terms], color="#55a868")
        ax.set_title(label)
    fig.tight_layout()
    parts += ["<h2>Top terms per class (documents containing the term)</h2>", _figure_to_img(fig)]
    plt.close(fig)

    rows = "".join(
        f"<tr><td>{html.escape(lab)}</td><td>{c['count']}</td><td>{c['share']:.1%}</td>"
        f"<td>{c['words_median']}</td><td>{c['words_min']}–{c['words_max']}</td></tr>"
        for lab, c in classes.items()
    )
    parts.append(
        "<h2>Table</h2><table><tr><th>class</th><th>rows</th><th>share</th><th>median words</th>"
        f"<th>range</th></tr>{rows}</table>"
    )
    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{padding:4px 10px;text-align:left}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def write_explore_report(frame: pd.DataFrame, output: Path, *, title: str) -> Path:
    """Summarise ``frame`` and write the HTML report to ``output``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_report(summarize(frame), title=title), encoding="utf-8")
    return output
