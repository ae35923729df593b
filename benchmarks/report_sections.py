"""The sections of docs/performance.md: one renderer per benchmark's results JSON (see report.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: One benchmark's results JSON.
Result = dict[str, Any]


# ---------------------------------------------------------------------------------------- formatting
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


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table and the blank line after it."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


# ------------------------------------------------------------------------------------------ sections
def quality_section(data: Result) -> list[str]:
    """Holdout quality and fit time per family and recipe, against the reference system."""
    seeds = data.get("seeds") or []
    lines = [
        f"Holdout of {data.get('holdout_rows', '?')} rows; median of {len(seeds)} seeds {seeds} and their "
        f"range; transformer trained with `--engine {data.get('transformer_engine', '?')}`. `refit` is "
        "what `tagops train` registers, `split` the model trained on the 80 % train split only."
        + (
            " Scored as served: calibrated on validation, with each model's own abstention threshold."
            if (data.get("calibration") or {}).get("enabled")
            else ""
        ),
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
                num(ece_median(r)),
                num(r.get("fit_seconds_median"), ".1f", " s"),
            ]
        )
    header = [
        "family",
        "recipe",
        "weighted F1",
        "precision",
        "recall",
        "macro F1",
        "min class F1",
        "ECE",
        "fit",
    ]
    lines += table(header, rows)
    lines += [
        "ECE: expected calibration error of the answers as served (calibrated probabilities), median of "
        "the seeds; a dash where the result does not record it.",
        "",
    ]
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
    return lines + robustness_section(data)


def ece_median(r: Result) -> float | None:
    """The median over a family's seeds of the ECE as served (``None`` when no run recorded it)."""
    if r.get("ece_median") is not None:
        return float(r["ece_median"])
    values = sorted(float(run["ece"]) for run in r.get("runs") or [] if run.get("ece") is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def robustness_section(data: Result) -> list[str]:
    """Median weighted F1 by robustness slice (rows) and family (columns), each family's worst marked."""
    by_family: dict[str, Result] = {}
    for r in data.get("results", []):
        if "robustness_f1_median" in r and (r.get("recipe") == "refit" or r["family"] not in by_family):
            by_family[r["family"]] = r  # the registered recipe where measured
    if not by_family:
        return [
            "Robustness: not in this result; `python benchmarks/quality.py` measures it, then "
            "`make perf-docs`.",
            "",
        ]
    lines = [
        "Robustness: weighted F1 (median of the seeds; recipe `refit` unless a column names another) on "
        f"the holdout as-is, on transformed copies of it (transform seed {data.get('robustness_seed', '?')}) "
        f"and on the challenge set of {data.get('challenge_rows', '?')} rows, whole and by style. Each "
        "family's lowest slice is marked *worst*.",
        "",
    ]
    about = {
        **(data.get("robustness_transforms") or {}),
        "holdout": "The holdout as-is.",
        "challenge": "The challenge set.",
    }
    slices = list(dict.fromkeys(name for r in by_family.values() for name in r["robustness_f1_median"]))
    rows = []
    for name in slices:
        style = name.partition("challenge.")[2]
        what = about.get(name) or (f"The challenge set, style `{style}`." if style else "")
        row = [f"`{name}`", what]
        for r in by_family.values():
            value = num(r["robustness_f1_median"].get(name))
            row.append(f"**{value}** (worst)" if r.get("robustness_worst_slice") == name else value)
        rows.append(row)
    columns = [
        f"`{family}`" + ("" if r.get("recipe") == "refit" else f" ({r.get('recipe')})")
        for family, r in by_family.items()
    ]
    return lines + table(["slice", "what", *columns], rows)


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


def serve_defaults_section(data: Result) -> list[str]:
    """`make run`'s champion served with default flags, beside `mlflow models serve`, over several starts."""
    model = data.get("model") or {}
    families = "+".join([str(model.get("family", "?")), *map(str, model.get("members") or [])])
    lines = [
        f"Model `{model.get('uri')}` (version {model.get('version')}, {families}); {data.get('rounds')} "
        f"rounds, each starting every server once from a warm model cache, with "
        f"{data.get('blocks_per_start')} blocks alternating with the raw predictor per start. Median over "
        "rounds (min–max).",
        "",
    ]

    def cell(figures: dict[str, Any], key: str, spec: str, suffix: str = "") -> str:
        value = figures.get(key) or {}
        return (
            f"{num(value.get('median'), spec, suffix)} "
            f"({num(value.get('min'), spec)}–{num(value.get('max'), spec)})"
        )

    rows = [
        [
            f"`{server}`" if server == "mlflow" else f"`tagops serve` ({server})",
            cell(figures, "cold_start_s", ".1f", " s"),
            cell(figures, "p50_ms", ".1f", " ms"),
            cell(figures, "p50_ratio_to_raw", ".2f", "x"),
            cell(figures, "requests_per_s", ".0f"),
            cell(figures, "throughput_ratio_to_raw", ".2f", "x"),
        ]
        for server, figures in (data.get("summary") or {}).items()
    ]
    header = ["server", "cold start to ready", "p50 at c=1", "vs raw", "requests/s at c=32", "vs raw"]
    lines += table(header, rows)
    checks = [
        [engine, name, num(check.get("value"), ".3g"), str(check.get("bar")), verdict(check.get("met"))]
        for engine, named in (data.get("bar") or {}).items()
        for name, check in named.items()
    ]
    if checks:
        lines += table(["engine", "check", "measured", "bar", "verdict"], checks)
    return lines


def lifecycle_section(data: Result) -> list[str]:
    """Stops and restarts on one port, by engine and by whom the SIGTERM was sent to."""
    lines = [
        f"{data.get('cycles_per_engine')} stops per engine on one port, alternating SIGTERM to the process "
        f"and to its process group, with {data.get('clients')} clients predicting through each. Bars: every "
        f"stop exits 0 within {num(data.get('exit_bar_s'), 'g')} s and leaves no process and no listening "
        "port, every restart is ready, no request sent before the signal goes unanswered, and every "
        "answered prediction is in the log (after `tagops log-replay`).",
        "",
    ]
    rows = [
        [
            row["engine"],
            row["signal_to"],
            f"{row['ready']}/{row['cycles']}",
            f"{row['exit_0']}/{row['cycles']}",
            f"{num(row.get('exit_s_median'), '.1f', ' s')} ({num(row.get('exit_s_max'), '.1f', ' s')})",
            str(row["with_processes_left"]),
            str(row["with_port_left"]),
            str(row["dropped_in_flight"]),
            f"{row.get('log_rows', '–')} / {row.get('log_rows_of_answered', '–').split('/')[-1]}",
            verdict(row.get("pass")),
        ]
        for row in data.get("summary") or []
    ]
    header = [
        "engine",
        "SIGTERM to",
        "ready",
        "exit 0",
        "exit median (max)",
        "stops leaving processes",
        "stops leaving the port",
        "dropped in flight",
        "log rows / answered",
        "bars",
    ]
    return lines + table(header, rows)


def canary_section(data: Result) -> list[str]:
    """The share a canary weight routes, stickiness, and abort and promotion under load."""
    lines = [
        "The rules version rolled out as a canary beside the linear champion: distinct two-item requests "
        "at the weight, 200 of them sent twice more (sticky: none should change model), then an abort and "
        "a promotion each under 8 s of load. Bars: the share within 3 points of the weight, no failed "
        "request, every answer afterwards from the expected model.",
        "",
    ]
    rows = [
        [
            row["engine"],
            f"{row['requests']} at {num(row['weight'], 'g')} %",
            num(row["canary_share"] * 100, ".1f", " %"),
            str(row["sticky_changed"]),
            f"{row['abort']['failed']} / {row['abort']['requests']}",
            f"{row['promote']['failed']} / {row['promote']['requests']}",
            " / ".join(
                ", ".join(f"v{v}" for v in row[step]["versions_after"]) for step in ("abort", "promote")
            ),
            verdict(row.get("pass")),
        ]
        for row in data.get("engines") or []
    ]
    header = [
        "engine",
        "requests at weight",
        "canary share",
        "changed when resent",
        "abort: failed / requests",
        "promote: failed / requests",
        "served after (abort / promote)",
        "bars",
    ]
    return lines + table(header, rows)


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
            "after shutdown: log rows / successful requests (+ failed)",
            f"{num(after.get('rows'))} / {num(after.get('successful_requests'))}"
            + (f" (+ {num(after['failed_requests'])})" if "failed_requests" in after else ""),
            "every success logged; at most the failed ones more (predicted, answer lost with the replica)",
            verdict(
                None
                if not after
                else after.get("pass", after.get("rows") == after.get("successful_requests"))
            ),
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


def hostile_section(data: Result) -> list[str]:
    """Worst-case bodies at every limit: their cost, and what other clients saw meanwhile."""
    bars = data.get("bars") or {}
    lines = [
        f"Model family `{data.get('family', '?')}`; {data.get('rounds')} interleaved rounds of "
        f"{data.get('block_seconds')} s blocks per kind (quiet: c=8 ordinary predictions and `/healthz` "
        "every 50 ms; hostile: the same while the body is sent again and again). Bars: the body answered "
        f"(2xx or 4xx) within {bars.get('hostile_max_s')} s, `/healthz` within {bars.get('healthz_max_ms')} "
        f"ms, ordinary p99 at most {bars.get('p99_ratio')}x the quiet blocks': {verdict(data.get('pass'))}.",
        "",
    ]
    rows = [
        [
            row["engine"],
            row["kind"],
            f"{row['body_bytes']:,} B, {row['items']} items",
            num(row["hostile_p50_s"], ".2f", " s"),
            num(row["hostile_max_s"], ".2f", " s"),
            num(row.get("cost_vs_ordinary"), ".2f", "x"),
            num(row["healthz_max_ms"], ".0f", " ms"),
            f"{num(row['quiet_p99_ms'], '.1f')} → {num(row['hostile_block_p99_ms'], '.1f')} ms",
            "{} ({}–{})".format(num(row["p99_ratio"], ".2f", "x"), *row["p99_ratio_spread"]),
            verdict(row["pass"]),
        ]
        for row in data.get("rows") or []
    ]
    header = [
        "engine",
        "text",
        "body",
        "answer p50",
        "answer max",
        "cost per byte vs ordinary",
        "/healthz max",
        "ordinary p99 quiet → hostile",
        "ratio (rounds)",
        "bars",
    ]
    return lines + table(header, rows)


def overload_section(data: Result) -> list[str]:
    """Answers by status at a concurrency far above the server's limit, and its memory."""
    bars = data.get("bars") or {}
    lines = [
        "Bars: only 200 and 503 answers, peak resident memory (the server's process tree) at most "
        f"{bars.get('rss_ratio')}x its idle value: {verdict(data.get('pass'))}.",
        "",
    ]
    rows = [
        [
            row["engine"],
            str(row["concurrency"]),
            f"{row['requests']:,}",
            f"{row['answered_200']:,}",
            f"{row['answered_503']:,}",
            str(row["other"]),
            num(row["p99_ms"], ".0f", " ms"),
            f"{num(row['idle_rss_mb'], '.0f')} → {num(row['peak_rss_mb'], '.0f')} MB",
            num(row["rss_ratio"], ".2f", "x"),
            verdict(row["pass"]),
        ]
        for row in data.get("rows") or []
    ]
    header = ["engine", "clients", "requests", "200", "503", "other", "p99", "memory", "ratio", "bars"]
    return lines + table(header, rows)


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
    lines += simulate_evidence(data)
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


def simulate_evidence(data: Result) -> list[str]:
    """What the retrained challenger was judged on before it replaced the champion: gates, shadow, canary."""
    retrain = data.get("retrain") or {}
    reports, gate = retrain.get("reports") or {}, retrain.get("gate") or {}

    def f1(report: Result) -> str:
        return f"{num(report.get('f1'))} {interval(report.get('f1_ci95'))}".strip() if report else "–"

    rows = []
    for where, label in (("holdout", "holdout gate"), ("recent", "recent-window gate")):
        champion = reports.get(f"champion_{where}") or {}
        challenger = reports.get(f"challenger_{where}") or {}
        if champion or challenger:
            size = challenger.get("rows", champion.get("rows", "?"))
            decision = gate.get(where) or {}
            rows.append(
                [
                    f"{label} ({size} rows)",
                    f1(champion),
                    f1(challenger),
                    str(decision.get("reason", "–")),
                    verdict(decision.get("promote")),
                ]
            )
    behaviour = gate.get("behaviour") or {}
    if behaviour:
        cases = sum(c.get("cases", 0) for c in (behaviour.get("counts") or {}).values())
        failed = ", ".join(behaviour.get("failed") or []) or "none failed"
        rows.append(["behavioural cases", "–", f"{cases} cases", failed, verdict(behaviour.get("passed"))])
    for comparison in (data.get("shadow_report") or {}).get("comparisons") or []:
        scores = comparison.get("f1") or {}
        rows.append(
            [
                f"shadow ({num(comparison.get('feedback_rows'))} labelled of {num(comparison.get('rows'))} "
                "shadowed items)",
                f1(scores.get("champion") or {}),
                f1(scores.get("shadow") or {}),
                f"F1 margin {num(comparison.get('f1_margin'), '+.3f')} "
                f"{interval(comparison.get('f1_margin_ci95'))} (paired); agreement "
                f"{num(comparison.get('agreement'))}",
                "–",
            ]
        )
    canary = data.get("canary") or {}
    report = canary.get("report") or {}
    if report:
        champion, side = report.get("champion") or {}, report.get("canary") or {}
        decision = canary.get("decision") or {}
        share = num(100 * report["canary_share"], ".0f", " %") if "canary_share" in report else "–"
        rows.append(
            [
                f"canary at {num(report.get('weight'), 'g')} % "
                f"(share {share}; "
                f"{num(side.get('labelled'))} / {num(champion.get('labelled'))} labelled)",
                f1(champion),
                f1(side),
                f"{decision.get('action', '–')}: {decision.get('reason', '–')}",
                verdict(None if not decision else decision.get("action") == "promote"),
            ]
        )
    if not rows:
        return []
    lines = [
        "Before the promotion, weighted F1 of the champion and the retrained challenger (95 % intervals):",
        "",
    ]
    lines += table(["check", "champion", "challenger", "decision", "result"], rows)
    counts = retrain.get("counts") or {}
    if counts:
        dropped = ", ".join(
            f"{num(counts[key])} {text}"
            for key, text in (
                ("pending_review", "waiting for review"),
                ("rejected", "rejected"),
                ("revoked_key", "from revoked keys"),
                ("superseded", "superseded by the same key's later label"),
                ("outvoted", "outvoted"),
                ("unresolved", "tied"),
                ("known_titles", "titles already in dataset.csv or holdout.csv"),
                ("invalid", "failing the data contract"),
            )
            if counts.get(key)
        )
        lines += [
            f"Feedback: {num(counts.get('feedback'))} rows; {num(counts.get('train'))} joined training and "
            f"{num(counts.get('recent'))} formed the recent window; left out: {dropped or 'none'}.",
            "",
        ]
    return lines


def interval(values: Any) -> str:
    """``(low–high)`` of a two-number interval, else nothing."""
    if isinstance(values, list | tuple) and len(values) == 2:
        return f"({num(values[0])}–{num(values[1])})"
    return ""


# ---------------------------------------------------------------------------------- cross-validation
def crossval_section(data: Result) -> list[str]:
    """Mean ± std of each family's weighted and macro F1 over the folds, and its worst class."""
    calibration = "on" if (data.get("calibration") or {}).get("enabled") else "off"
    lines = [
        f"{data.get('folds', '?')}-fold stratified cross-validation of dataset.csv "
        f"({num(data.get('dataset_rows'))} rows, seed {data.get('seed', '?')}); in each fold the recipe of "
        f"`{data.get('config', 'configs/pipeline.yaml')}` trains on the other folds as the training pipeline "
        "does and is scored on the held-out fold. Mean ± standard deviation over the folds; augmentation "
        f"`{data.get('augment', 'none')}`, calibration {calibration}, transformer trained with "
        f"`--engine {data.get('transformer_engine', '?')}`. The holdout is not used.",
        "",
    ]
    rows = []
    for r in data.get("results", []):
        f1, macro, worst = r.get("f1") or {}, r.get("macro_f1") or {}, r.get("worst_class") or {}
        rows.append(
            [
                f"`{r.get('family')}`",
                f"**{num(f1.get('mean'))}** ± {num(f1.get('std'))}",
                f"{num(f1.get('min'))}–{num(f1.get('max'))}",
                f"{num(macro.get('mean'))} ± {num(macro.get('std'))}",
                f"`{worst.get('label', '–')}` {num(worst.get('mean'))} ± {num(worst.get('std'))}",
                num((r.get("ece") or {}).get("mean")),
                num((r.get("training_seconds") or {}).get("mean"), ".1f", " s"),
            ]
        )
    header = ["family", "weighted F1", "range", "macro F1", "worst class (F1)", "ECE", "training per fold"]
    return lines + table(header, rows)


def unseen_topics_section(data: Result) -> list[str]:
    """Per family: the share of each withheld topic of `other` answered `other`, and F1 beside it."""
    topics = list(data.get("topics") or {})
    lines = [
        f"Each of `other`'s finer topics in dataset.csv ({num(data.get('dataset_rows'))} rows; "
        + ", ".join(f"`{t}` {n}" for t, n in (data.get("topics") or {}).items())
        + f") withheld in turn: the recipe of `{data.get('config', 'configs/pipeline.yaml')}` trains "
        "without it (and without a stratified fifth of the rest), calibrated on validation, transformer "
        f"trained with `--engine {data.get('transformer_engine', '?')}`; then scored as served. "
        "*Answered `other`*: the share of the withheld topic's rows tagged `other`, as the label guide "
        "asks for a topic outside vision, language and operations. *Seen F1*: weighted F1 on the withheld "
        "fifth. *Both*: weighted F1 and `other`'s F1 on the two together. Means over the topics. The "
        "holdout and the challenge set are not used.",
        "",
    ]
    rows = []
    for r in data.get("results", []):
        shares = [
            num(((r.get("topics") or {}).get(t) or {}).get("unseen_other_share"), ".2f") for t in topics
        ]
        rows.append(
            [
                f"`{r.get('family')}`",
                *shares,
                f"**{num(r.get('unseen_other_share'), '.2f')}**",
                num(r.get("seen_f1")),
                num(r.get("both_f1")),
                num(r.get("both_other_f1")),
            ]
        )
    header = [
        "family",
        *(f"answered `other`: {t}" for t in topics),
        "mean",
        "seen F1",
        "both F1",
        "both, `other` F1",
    ]
    return lines + table(header, rows)


# ------------------------------------------------------------------------------------------ warehouse
def warehouse_section(data: Result) -> list[str]:
    """Build times of the warehouse on the real data, first and rebuilt, and whether the snapshot held."""
    summary, bar = data.get("summary") or {}, data.get("bar") or {}
    builds = data.get("builds") or []
    lines = [
        f"{len(builds)} builds as `tagops data build --no-feedback` runs them, in one process, each with a "
        "new DuckDB database: the four files verified against the manifest, every SQL file and its data "
        "tests, the content hash and, when the rows are new, the Parquet snapshot. The first build starts "
        "from a fresh home (it copies the files from the mirror and writes the snapshot); the rebuilds "
        f"find both in place. Bar: every build within {num(bar.get('max_build_s'), 'g')} s and every build "
        f"giving the same snapshot id: {verdict(bar.get('pass'))}.",
        "",
    ]
    tables = list(dict.fromkeys(name for b in builds for name in b.get("rows") or {}))
    rows = [
        [
            str(b.get("build")),
            num(b.get("seconds"), ".2f", " s"),
            f"`{b.get('snapshot_id')}`",
            "yes" if b.get("created") else "no",
            *(num((b.get("rows") or {}).get(name)) for name in tables),
        ]
        for b in builds
    ]
    lines += table(["build", "time", "snapshot", "written", *(f"`{name}` rows" for name in tables)], rows)
    if summary:
        lines += [
            f"First build {num(summary.get('first_s'), '.2f', ' s')}; rebuilds median "
            f"{num(summary.get('rebuild_median_s'), '.2f', ' s')} "
            f"({num(summary.get('rebuild_min_s'), '.2f')}–"
            f"{num(summary.get('rebuild_max_s'), '.2f')} s); snapshots written: "
            f"{num(summary.get('snapshots_written'))}; same snapshot id every time: "
            f"{'yes' if summary.get('same_id') else 'no'}; importing the warehouse code: "
            f"{num(summary.get('import_s'), '.2f', ' s')}.",
            "",
        ]
    return lines


# ---------------------------------------------------------------------------------------- label audit
def label_audit_section(data: Result) -> list[str]:
    """The audit of the real files, and its precision and recall on wrong tags planted in dataset.csv."""
    files, medians = data.get("files") or {}, data.get("planted_medians") or {}
    config = data.get("config")
    how = f"`tagops data audit --config {config}`" if config else "`tagops data audit` as it runs unless told"
    lines = [
        f"{how}: the `{data.get('family', '?')}` model over {data.get('folds', '?')} folds scores every row "
        "out of fold, and confident learning (cleanlab) flags the rows whose tag it counts as wrong "
        "(docs/data.md, Audit labels).",
        "",
    ]
    rows = [
        [
            f"`{name}`",
            num(f.get("rows")),
            num(f.get("flagged")),
            num(f.get("estimated_noise"), ".1%"),
            num(f.get("out_of_fold_f1")),
            num(f.get("seconds"), ".1f", " s"),
        ]
        for name, f in files.items()
    ]
    lines += table(["file", "rows", "flagged", "estimated wrong tags", "out-of-fold F1", "time"], rows)
    if medians:
        runs = data.get("planted") or []
        seeds = sorted({r.get("seed") for r in runs})
        lines += [
            "Planted noise: that share of dataset.csv's rows, drawn at random, given another tag at random; "
            f"median over {len(seeds)} seeds (min–max). The tags already wrong in dataset.csv count "
            "against precision, so it is a lower bound.",
            "",
        ]

        def cell(kind: dict[str, Any], key: str) -> str:
            low, high = kind.get(f"{key}_range") or [None, None]
            return f"{num(kind.get(key), '.2f')} ({num(low, '.2f')}–{num(high, '.2f')})"

        rows = []
        for share, m in medians.items():
            for label, key in (("flagged", "flagged"), ("with `--disagreements`", "with_disagreements")):
                kind = m.get(key) or {}
                rows.append(
                    [
                        num(float(share), ".0%"),
                        label,
                        num(kind.get("listed"), ".0f"),
                        cell(kind, "precision"),
                        cell(kind, "recall"),
                    ]
                )
        lines += table(["planted", "rows listed", "listed (median)", "precision", "recall"], rows)
    return lines


# -------------------------------------------------------------------------------------------- console
def console_section(data: Result) -> list[str]:
    """The console's predict page against the JSON API on the same server: the HTML's extra time."""
    engines = data.get("engines") or {}
    bar = data.get("bar_ms")
    met = [e.get("met") for e in engines.values()]
    lines = [
        f"Model family `{data.get('family', '?')}`; one request at a time, single holdout items, in "
        f"{data.get('blocks', '?')} interleaved blocks of {data.get('per_block', '?')} requests per page "
        "(`POST /v1/predict`, then `POST /console/predict`, the form a browser sends, answered with the "
        "whole page). Median of the blocks' medians (min–max). Bar: the console adds at most "
        f"{num(bar, 'g')} ms at the median: {verdict(all(met) if met else None)}.",
        "",
    ]

    def cell(figures: Result, key: str, spec: str) -> str:
        spread = figures.get(f"{key}_spread_ms") or []
        return f"{num(figures.get(f'{key}_ms'), spec, ' ms')} {interval_of(spread, spec)}".strip()

    rows = [
        [
            engine,
            cell(figures, "api_p50", ".1f"),
            cell(figures, "console_p50", ".1f"),
            cell(figures, "extra", "+.1f"),
            verdict(figures.get("met")),
        ]
        for engine, figures in engines.items()
    ]
    header = ["engine", "API p50", "console page p50", "console's extra time", "bar"]
    return lines + table(header, rows)


def interval_of(values: Any, spec: str) -> str:
    """``(low–high)`` of a two-number spread in ``spec``, else nothing."""
    if isinstance(values, list | tuple) and len(values) == 2:
        return f"({num(values[0], spec)} to {num(values[1], spec)})"
    return ""
