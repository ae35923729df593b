"""Write docs/performance.md and the README's results table from benchmarks/results/*.json.

    python benchmarks/report.py [--results benchmarks/results] [--doc docs/performance.md]
                                [--readme README.md] [--check]

Every figure in both files comes from a results JSON, next to the date it was measured, the command that
measured it, the machine and the bar it is held to, so the text cannot drift from the results. A
benchmark without a results file gets a section that says how to measure it. The README's table lies
between ``<!-- results:start -->`` and ``<!-- results:end -->``; the rest of the README is left as it is.
``--check`` writes nothing and exits 1 when either file is out of date. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"
Result = dict[str, Any]
#: Each benchmark's results and the default command that writes them, in the order of the page.
COMMANDS = {
    "quality": "python benchmarks/quality.py",
    "serve": "python benchmarks/serve.py --family {family}",
    "serve_resilience": "python benchmarks/serve_resilience.py",
    "serve_fuzz": "python benchmarks/serve_fuzz.py",
    "batch_predict": "python benchmarks/batch_predict.py",
    "drift": "python benchmarks/drift.py",
    "simulate": "python benchmarks/simulate.py --family {family}",
}
#: The benchmarks measured per model family, and the families each is expected to report.
PER_FAMILY = ("serve", "simulate")
FAMILIES = ("linear", "transformer")


# ------------------------------------------------------------------------------------------ reading
def load_results(folder: Path) -> dict[str, list[Result]]:
    """The results JSON files by benchmark (their ``benchmark`` field, else the file name before ``-``)."""
    found: dict[str, list[Result]] = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            continue
        kind = str(data.get("benchmark") or path.stem.split("-")[0])
        found.setdefault(kind, []).append({**data, "_file": path.name})
    return found


def latest(results: list[Result]) -> Result:
    """The most recently measured result (empty when there is none)."""
    return max(results, key=measured_at, default={})


def latest_per_family(results: list[Result]) -> dict[str, Result]:
    """The most recently measured result of each model family."""
    families = {str(data.get("family")) for data in results}
    return {f: latest([d for d in results if str(d.get("family")) == f]) for f in sorted(families)}


def measured_at(data: Result) -> str:
    """When the result was measured, as recorded (older files: their ``time`` fields)."""
    machine_before = data.get("machine_before") or {}
    return str(data.get("measured_at") or data.get("time") or machine_before.get("time") or "")


# ---------------------------------------------------------------------------------------- formatting
def num(value: Any, spec: str = ".3f", suffix: str = "") -> str:
    """A number as text; a dash when it was not recorded."""
    if value is None or value == "":
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) and spec == ".3f":  # a count
        return f"{value:,}{suffix}"
    return f"{format(value, spec)}{suffix}"


def verdict(passed: Any) -> str:
    """``pass`` / ``fail`` / a dash."""
    return "–" if passed is None or passed == "" else ("pass" if passed else "**fail**")


def day(data: Result) -> str:
    """The measurement date (YYYY-MM-DD), or a dash."""
    return measured_at(data)[:10] or "–"


def when(data: Result) -> str:
    """The measurement time in words for a provenance line."""
    raw = measured_at(data)
    if not raw:
        return "date not recorded"
    try:
        return datetime.fromisoformat(raw).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return raw


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table and the blank line after it."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def provenance(kind: str, data: Result) -> list[str]:
    """Date, command and machine of one result."""
    machine = data.get("machine") or data.get("machine_before") or {}
    cpus = machine.get("cpus") or data.get("cpus")
    parts = [f"{cpus} CPUs" if cpus else "CPU count not recorded"]
    parts += [str(machine[k]) for k in ("processor", "platform") if machine.get(k)]
    if machine.get("python"):
        parts.append(f"Python {machine['python']}")
    command = data.get("command")
    default = COMMANDS[kind].format(family=data.get("family"))
    how = f"`{command}`" if command else f"command not recorded (default: `{default}`)"
    return [
        f"- Measured: {when(data)}",
        f"- Command: {how}",
        f"- Machine: {', '.join(parts)}",
        f"- File: `benchmarks/results/{data['_file']}`",
        "",
    ]


def not_measured(kind: str, family: str = "linear") -> list[str]:
    """The section of a benchmark without a results file."""
    command = COMMANDS[kind].format(family=family)
    return [f"Not measured yet: run `{command}`, then `make perf-docs`.", ""]


def per_family(kind: str, results: list[Result], render: Callable[[Result], list[str]]) -> list[str]:
    """A subsection per model family: its latest result, or how to measure it."""
    by_family = latest_per_family(results)
    lines: list[str] = []
    for family in [*FAMILIES, *(f for f in by_family if f not in FAMILIES)]:
        lines += [f"### `{family}`", ""]
        data = by_family.get(family)
        lines += [*provenance(kind, data), *render(data)] if data else not_measured(kind, family)
    return lines


# ------------------------------------------------------------------------------------------ sections
def quality_section(data: Result) -> list[str]:
    """Holdout quality and fit time per family and recipe, against the reference system."""
    seeds = data.get("seeds") or []
    lines = [
        f"Holdout of {data.get('holdout_rows', '?')} rows; median of {len(seeds)} seeds {seeds} and their "
        f"range; transformer trained with `--engine {data.get('transformer_engine', '?')}`. `refit` is "
        "what `tagops train` registers, `split` the model trained on the 80 % train split only.",
        "",
    ]
    rows = []
    for r in data.get("results", []):
        rows.append(
            [
                f"`{r['family']}`",
                r.get("recipe", ""),
                f"**{num(r.get('f1_median'))}** ({num(r.get('f1_min'))}–{num(r.get('f1_max'))})",
                num(r.get("precision_median")),
                num(r.get("recall_median")),
                num(r.get("macro_f1_median")),
                num(r.get("min_class_f1_median")),
                num(r.get("fit_seconds_median"), ".1f", " s"),
            ]
        )
    header = ["family", "recipe", "weighted F1", "precision", "recall", "macro F1", "min class F1", "fit"]
    lines += table(header, rows)
    labels = sorted({lab for r in data.get("results", []) for lab in r.get("per_class_f1_median", {})})
    if labels:
        per_class = [
            [f"`{r['family']}`", r.get("recipe", "")]
            + [num(r.get("per_class_f1_median", {}).get(lab)) for lab in labels]
            for r in data.get("results", [])
        ]
        lines += ["Per-class F1 (median of the seeds):", ""]
        lines += table(["family", "recipe", *labels], per_class)
    reference = data.get("reference") or {}
    if reference:
        lines += ["Measured against the reference system (holdout weighted F1):", ""]
        lines += table(["reference", "weighted F1"], [[k, num(v)] for k, v in reference.items()])
    return lines


def serve_section(data: Result) -> list[str]:
    """Latency and throughput per engine, the paired measurements and the bars, per family."""
    lines: list[str] = []
    rows = []
    for r in data.get("results", []):
        if r.get("concurrency") == 0:  # the raw predictor on batches: items per second
            rows.append([r["engine"], "–", "–", "–", num(r.get("requests_per_s"), ".1f", " items/s"), "–"])
            continue
        rows.append(
            [
                r["engine"],
                str(r.get("concurrency")),
                num(r.get("p50_ms"), ".2f", " ms"),
                num(r.get("p99_ms"), ".2f", " ms"),
                num(r.get("requests_per_s"), ".1f"),
                str(r.get("errors", "–")),
            ]
        )
    header = ["engine", "concurrency", "p50", "p99", "requests/s", "errors"]
    lines += table(header, rows)
    paired = data.get("paired_concurrency_1") or []
    if paired:
        lines += ["Concurrency 1, the raw predictor and the engine in alternating blocks:", ""]
        lines += table(
            ["engine", "raw p50", "engine p50", "added"],
            [
                [
                    p["engine"],
                    num(p.get("raw_p50_ms"), ".2f", " ms"),
                    num(p.get("engine_p50_ms"), ".2f", " ms"),
                    num(p.get("added_p50_ms"), "+.2f", " ms"),
                ]
                for p in paired
            ],
        )
    paired_32 = data.get("paired_concurrency_32") or []
    if paired_32:
        lines += ["Concurrency 32 and the raw batched predictor in alternating blocks:", ""]
        lines += table(
            [
                "engine",
                "engine requests/s",
                "raw, batches of",
                "raw items/s",
                "ratio",
                "raw, batches of",
                "raw items/s",
                "ratio",
            ],
            [
                [
                    p["engine"],
                    num(p.get("engine_requests_per_s"), ".1f"),
                    str(p.get("raw_batch_items")),
                    num(p.get("raw_batched_items_per_s"), ".1f"),
                    num(p.get("ratio"), ".3f"),
                    str(p.get("max_batch_items")),
                    num(p.get("raw_max_batch_items_per_s"), ".1f"),
                    num(p.get("ratio_to_max_batch"), ".3f"),
                ]
                for p in paired_32
            ],
        )
    lines += [*serve_bars(data), ""]
    return lines


def serve_bars(data: Result) -> list[str]:
    """The bars of one serve result, as the benchmark judged them."""
    bar = data.get("bar") or {}
    if not bar:
        return ["Bars: not judged (the run measured no Ray Serve and raw pair at concurrency 1)."]
    if "limit_ms" in bar:
        added = bar.get("ray_added_p50_ms_at_c1_paired", bar.get("ray_added_p50_ms_at_c1"))
        return [
            f"Bar: Ray Serve adds at most {num(bar['limit_ms'], 'g')} ms to the raw predictor's p50 at "
            f"concurrency 1. Measured: {num(added, '+.2f', ' ms')} (alternating blocks; "
            f"{num(bar.get('ray_added_p50_ms_at_c1'), '+.2f', ' ms')} from the separate runs): "
            f"{verdict(bar.get('pass'))}."
        ]
    return [
        f"Bars: Ray Serve's p50 at concurrency 1 at most {num(bar.get('p50_ratio_limit'), 'g')}x the raw "
        f"single-item p50, measured {num(bar.get('ray_p50_ratio_at_c1'), '.2f', 'x')}; its requests/s at "
        f"concurrency 32 at least {num(bar.get('throughput_ratio_limit'), 'g')}x the raw predictor's items/s "
        f"on the batches 32 clients can form, measured "
        f"{num(bar.get('ray_c32_throughput_ratio_to_raw_batched'), '.2f', 'x')}: {verdict(bar.get('pass'))}."
    ]


def resilience_section(data: Result) -> list[str]:
    """The prediction log under load, a killed replica, a reload under load."""
    log, kill, reload = data.get("log") or {}, data.get("kill") or {}, data.get("reload") or {}
    after = data.get("log_after_shutdown") or {}
    rows = [
        [
            "requests at concurrency 32: errors / rows in the log",
            f"{num(log.get('requests'))} requests: {num(log.get('errors'))} / {num(log.get('rows_in_log'))}",
            "0 errors, one row per request",
            verdict(log.get("pass")),
        ],
        [
            "a replica SIGKILLed under load: failed requests",
            f"{num(kill.get('errors'))} of {num(kill.get('requests'))} "
            f"({num(kill.get('failed_share'), '.3%')})",
            "≤ 1 %",
            verdict(None if not kill else (kill.get("failed_share") or 0) <= 0.01),
        ],
        [
            "… last failure after the kill / replacement serving after",
            f"{num(kill.get('last_failure_after_kill_s'), '.2f', ' s')} / "
            f"{num(kill.get('replacement_serving_after_s'), '.2f', ' s')}",
            "≤ 10 s each",
            verdict(kill.get("pass")),
        ],
        [
            "reload under load: failed requests",
            f"{num(reload.get('errors'))} of {num(reload.get('requests'))}",
            "0",
            verdict(None if not reload else reload.get("errors") == 0),
        ],
        [
            "reload: version every replica reports afterwards",
            str(reload.get("versions_after", "–")),
            "the new version only",
            verdict(reload.get("pass")),
        ],
        [
            "after shutdown: log rows / successful requests",
            f"{num(after.get('rows'))} / {num(after.get('successful_requests'))}",
            "equal",
            verdict(None if not after else after.get("rows") == after.get("successful_requests")),
        ],
    ]
    config = data.get("config") or {}
    lines = [
        f"Ray Serve, {config.get('num_replicas', '?')} replicas of {config.get('num_cpus', '?')} CPU, the "
        "linear champion.",
        "",
    ]
    return lines + table(["check", "measured", "bar", "result"], rows)


def fuzz_section(data: Result) -> list[str]:
    """Generated requests against the live API, and how many were answered 5xx."""
    errors = data.get("server_errors") or []
    lines = [
        f"Engine `{data.get('engine', '?')}`: {num(data.get('requests'))} requests generated from the "
        f"OpenAPI schema, {len(errors)} answered 5xx. Bar: at least 1,000 requests, no 5xx: "
        f"{verdict(data.get('pass'))}.",
        "",
    ]
    by_operation: dict[str, dict[int, int]] = {}
    for row in data.get("by_operation_and_status") or []:
        by_operation.setdefault(row["operation"], {})[row["status"]] = row["responses"]
    rows = [
        [op, ", ".join(f"{status}: {count}" for status, count in sorted(statuses.items()))]
        for op, statuses in sorted(by_operation.items())
    ]
    return lines + table(["operation", "answers by status"], rows) if rows else lines


def batch_section(data: Result) -> list[str]:
    """Batch inference throughput through Ray Data against the raw in-process model."""
    lines = [
        f"{num(data.get('rows'))} rows, model: {data.get('model', '?')}; Ray's output tags equal the "
        f"in-process output on {num(data.get('tags_equal'))} of them. The bar is the raw in-process "
        "`predict_proba` (first row; `vs raw` is each path's share of it).",
        "",
    ]
    rows = [
        [
            str(r.get("path")),
            num(r.get("seconds"), ".2f", " s"),
            num(r.get("rows_per_s"), ".1f"),
            num(r.get("vs_raw"), ".2f", "x"),
            str(r.get("note", "")),
        ]
        for r in data.get("results", [])
    ]
    return lines + table(["path", "time", "rows/s", "vs raw", "what"], rows)


def drift_section(data: Result) -> list[str]:
    """False alarms on in-distribution windows, detection on shifted ones."""
    lines = [
        "Bars: no alarm on in-distribution windows; an alarm on every shifted window.",
        "",
    ]
    rows = []
    for r in data.get("table", []):
        shifted = str(r.get("scenario", "")).startswith("shift")
        passed = r.get("alarms") == r.get("windows") if shifted else r.get("alarms") == 0
        rows.append(
            [
                str(r.get("scenario")),
                str(r.get("windows")),
                str(r.get("alarms")),
                num(r.get("min_p_adjusted"), ".2g"),
                ", ".join(r.get("drifted_first_window") or []) or "–",
                verdict(passed),
            ]
        )
    header = ["scenario", "windows", "alarms", "min adjusted p", "drifted tests (first window)", "result"]
    return lines + table(header, rows)


def simulate_section(data: Result) -> list[str]:
    """The loop end to end: windows, retrain, shadow, promotion, before/after, rows."""
    lines: list[str] = []
    timings = data.get("timings_s") or {}
    lines += [
        f"Wall time {num(data.get('wall_s'), '.0f', ' s')}; "
        + ", ".join(f"{k.replace('_', ' ')} {num(v, '.0f', ' s')}" for k, v in timings.items())
        + ".",
        "",
    ]
    windows = [
        [
            str(w.get("name")),
            str(w.get("kind")),
            str(w.get("rows")),
            "yes" if w.get("alarm") else "no",
            ", ".join(w.get("drifted") or []) or "–",
            num(w.get("min_p_adjusted"), ".2g"),
        ]
        for w in data.get("windows", [])
    ]
    if windows:
        lines += table(["window", "traffic", "rows", "alarm", "drifted (Holm)", "min adjusted p"], windows)
    comparison = data.get("before_after") or {}
    rows = []
    for name, label in (("served", "as served"), ("top_answer", "top answer")):
        c = comparison.get(name) or {}
        if c:
            rows.append(
                [
                    label,
                    f"{num(c['old'].get('f1'))} {interval(c['old'].get('f1_ci95'))}",
                    f"{num(c['new'].get('f1'))} {interval(c['new'].get('f1_ci95'))}",
                    f"{num(c.get('margin'), '+.3f')} {interval(c.get('margin_ci95'))}",
                ]
            )
    if rows:
        size = (comparison.get("served") or {}).get("rows", "?")
        lines += [
            f"Weighted F1 on the shifted holdout ({size} rows), champion "
            f"v{comparison.get('old_version')} → v{comparison.get('new_version')} (95 % intervals):",
            "",
        ]
        lines += table(["answers", "old champion", "new champion", "margin (paired)"], rows)
    counts = data.get("rows") or {}
    if counts:
        c = {k: num(v) for k, v in counts.items()}
        lines += [
            f"Rows: {c.get('items_sent')} items sent, {c.get('prediction_rows')} prediction rows; "
            f"{c.get('feedback_accepted')} feedback accepted, {c.get('feedback_rows')} feedback rows; "
            f"{c.get('shadowed_items_sent')} items shadowed, {c.get('shadow_rows')} shadow rows; "
            f"{c.get('failed_requests')} failed requests.",
            "",
        ]
    checks = data.get("verdict") or {}
    bars: list[tuple[str, str, Callable[[Any], bool]]] = [
        ("in_distribution_false_alarms", "no drift alarm on in-distribution windows", lambda v: v == 0),
        ("first_shifted_window_alarm", "an alarm in the first shifted window", bool),
        ("promoted", "the retrained challenger promoted", bool),
        ("reloaded_to_new_champion", "the service serves it after the reload", bool),
        ("improved", "the paired 95 % interval of the F1 margin above 0", bool),
        ("no_row_lost", "no prediction, feedback or shadow row lost", bool),
    ]
    rows = [[text, str(checks[key]), verdict(ok(checks[key]))] for key, text, ok in bars if key in checks]
    if rows:
        lines += table(["bar", "measured", "result"], rows)
    return lines


def interval(values: Any) -> str:
    """``(low–high)`` of a two-number interval, else nothing."""
    if isinstance(values, list | tuple) and len(values) == 2:
        return f"({num(values[0])}–{num(values[1])})"
    return ""


Section = tuple[str, str, str, Callable[[Result], list[str]]]
SECTIONS: list[Section] = [
    ("quality", "Model quality", "Holdout quality of every family over several seeds.", quality_section),
    (
        "serve",
        "Serving latency and throughput",
        "The raw in-process predictor, uvicorn and Ray Serve on the same model, one real holdout item "
        "per request from a load generator on the same machine (docs/serving.md).",
        serve_section,
    ),
    (
        "serve_resilience",
        "Serving under failure",
        "The prediction log under load, a replica killed with SIGKILL, a model reload under load.",
        resilience_section,
    ),
    (
        "serve_fuzz",
        "API fuzzing",
        "schemathesis against a live server: valid and invalid requests for every operation.",
        fuzz_section,
    ),
    (
        "batch_predict",
        "Batch inference",
        "The transformer over a file through Ray Data against the raw in-process model.",
        batch_section,
    ),
    (
        "drift",
        "Drift detection",
        "The monitor's alarms on in-distribution and shifted windows of the real holdout (docs/loop.md).",
        drift_section,
    ),
    (
        "simulate",
        "The loop end to end",
        "`tagops simulate`: drift, retraining with feedback, shadow, promotion and reload against a "
        "running service (docs/loop.md).",
        simulate_section,
    ),
]


# ------------------------------------------------------------------------------------------- outputs
def render_performance(found: dict[str, list[Result]]) -> str:
    """docs/performance.md."""
    lines = [
        "# Performance",
        "",
        "<!-- Generated by `make perf-docs` (benchmarks/report.py) from benchmarks/results/*.json: "
        "edit those, not this file. -->",
        "",
        "Current figures of every benchmark, each with the date it was measured, the exact command (rerun "
        "it, then `make perf-docs`) and the machine. On a machine with few CPUs or other work on it, "
        "figures vary from run to run: compare figures measured in the same run, as the bars do.",
        "",
    ]
    for kind, title, about, render in SECTIONS:
        lines += [f"## {title}", "", about, ""]
        results = found.get(kind, [])
        if kind in PER_FAMILY:
            lines += per_family(kind, results, render)
        elif results:
            lines += [*provenance(kind, latest(results)), *render(latest(results))]
        else:
            lines += not_measured(kind)
    return "\n".join(lines).rstrip() + "\n"


def summary_rows(found: dict[str, list[Result]]) -> list[list[str]]:
    """The README's rows: quality and training time per family, serving, resilience, the loop."""
    missing = ["not measured yet", "–"]
    rows: list[list[str]] = []
    quality = latest(found.get("quality", []))
    refit = {r["family"]: r for r in quality.get("results", []) if r.get("recipe") == "refit"}
    reference = (quality.get("reference") or {}).get("SciBERT fine-tuned (GPU)")
    for family in ("ensemble", "transformer", "linear", "rules"):
        r = refit.get(family) or {}
        against = f"reference (SciBERT on a GPU): {num(reference)}" if family == "ensemble" else ""
        figure = [f"{num(r.get('f1_median'))} ({num(r.get('f1_min'))}–{num(r.get('f1_max'))})", day(quality)]
        rows.append(
            [f"holdout weighted F1, `{family}`", against if reference else "", *(figure if r else missing)]
        )
    for family in ("transformer", "linear"):
        r = refit.get(family) or {}
        figure = [num(r.get("fit_seconds_median"), ".0f", " s"), day(quality)]
        rows.append([f"training time, `{family}`", "", *(figure if r else missing)])
    serve = latest_per_family(found.get("serve", []))
    bar = (serve.get("linear") or {}).get("bar") or {}
    added = bar.get("ray_added_p50_ms_at_c1_paired", bar.get("ray_added_p50_ms_at_c1"))
    figure = [f"{num(added, '+.2f', ' ms')}: {verdict(bar.get('pass'))}", day(serve.get("linear") or {})]
    rows.append(["Ray Serve latency added at c=1, `linear`", "≤ 5 ms", *(figure if bar else missing)])
    bar = (serve.get("transformer") or {}).get("bar") or {}
    figure = [
        f"{num(bar.get('ray_p50_ratio_at_c1'), '.2f', 'x')} / "
        f"{num(bar.get('ray_c32_throughput_ratio_to_raw_batched'), '.2f', 'x')}: {verdict(bar.get('pass'))}",
        day(serve.get("transformer") or {}),
    ]
    what = "Ray Serve vs raw model, `transformer`: p50 at c=1 / throughput at c=32"
    rows.append([what, "≤ 1.3x / ≥ 0.8x", *(figure if bar else missing)])
    resilience = latest(found.get("serve_resilience", []))
    kill = resilience.get("kill") or {}
    figure = [
        f"{num(kill.get('failed_share'), '.3%')} failed, "
        f"replacement after {num(kill.get('replacement_serving_after_s'), '.1f', ' s')}",
        day(resilience),
    ]
    rows.append(["replica killed under load", "≤ 1 %, ≤ 10 s", *(figure if kill else missing)])
    simulate = latest_per_family(found.get("simulate", []))
    served = ((simulate.get("linear") or {}).get("before_after") or {}).get("served") or {}
    figure = [
        f"{num(served.get('old', {}).get('f1'))} → {num(served.get('new', {}).get('f1'))}, "
        f"margin {num(served.get('margin'), '+.3f')} {interval(served.get('margin_ci95'))}",
        day(simulate.get("linear") or {}),
    ]
    what = "`tagops simulate`, `linear`: F1 on shifted traffic, old → new champion"
    rows.append([what, "margin > 0", *(figure if served else missing)])
    return [[what, figure, bar, when] for what, bar, figure, when in rows]


def render_readme_table(found: dict[str, list[Result]]) -> str:
    """The README's results table, markers included."""
    lines = [START, ""]
    lines += table(["result", "figure", "bar", "measured"], summary_rows(found))
    lines += ["Dates, commands and machines: [docs/performance.md](docs/performance.md).", "", END]
    return "\n".join(lines)


def update_readme(text: str, block: str) -> str:
    """``text`` with the block between the markers replaced (markers required, once each)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README: the markers {START} and {END} are missing")
    return text[:start] + block + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="Write nothing; exit 1 if out of date.")
    args = parser.parse_args(argv)

    found = load_results(args.results)
    outputs = {
        args.doc: render_performance(found),
        args.readme: update_readme(args.readme.read_text(encoding="utf-8"), render_readme_table(found)),
    }
    stale = [path for path, text in outputs.items() if not path.is_file() or path.read_text("utf-8") != text]
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run `make perf-docs`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(outputs[path], encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
