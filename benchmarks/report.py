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

from report_sections import (
    Result,
    batch_section,
    canary_section,
    console_section,
    crossval_section,
    drift_section,
    fuzz_section,
    hostile_section,
    interval,
    label_audit_section,
    lifecycle_section,
    num,
    overload_section,
    quality_section,
    resilience_section,
    serve_defaults_section,
    serve_section,
    simulate_section,
    table,
    unseen_topics_section,
    verdict,
    warehouse_section,
)

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"
#: Each benchmark's results and the default command that writes them, in the order of the page.
COMMANDS = {
    "quality": "python benchmarks/quality.py",
    "crossval": "python benchmarks/crossval.py",
    "unseen_topics": "python benchmarks/unseen_topics.py",
    "warehouse": "python benchmarks/warehouse.py",
    "label_audit": "python benchmarks/label_audit.py",
    "serve": "python benchmarks/serve.py --family {family}",
    "serve-defaults": "python benchmarks/serve.py --as-built",
    "serve_resilience": "python benchmarks/serve_resilience.py",
    "serve_canary": "python benchmarks/serve_canary.py",
    "serve_lifecycle": "python benchmarks/serve_lifecycle.py",
    "serve_fuzz": "python benchmarks/serve_fuzz.py",
    "serve_hostile": "python benchmarks/serve_hostile.py",
    "serve_overload": "python benchmarks/serve_overload.py",
    "console": "python benchmarks/console.py",
    "batch_predict": "python benchmarks/batch_predict.py",
    "drift": "python benchmarks/drift.py",
    "simulate": "python benchmarks/simulate.py --family {family}",
}
#: The benchmarks measured per model family, and the families each is expected to report.
PER_FAMILY = ("serve", "simulate")
FAMILIES = ("linear", "transformer")
#: The benchmarks measured in variants, and the results field that names the variant.
PER_VARIANT = {"crossval": "augment"}
#: The benchmarks that take ``--config``: a result that names no config, or the pipeline's own, is the
#: default one (the label audit's default, the linear model, names none); another config's result is
#: reported apart, after the default's.
BY_CONFIG = ("quality", "crossval", "unseen_topics", "label_audit")
DEFAULT_CONFIG = "configs/pipeline.yaml"


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


def other_config(data: Result) -> str | None:
    """The file name of the config a result ran, when it names one other than ``configs/pipeline.yaml``."""
    config = str(data.get("config") or DEFAULT_CONFIG)
    return None if config == DEFAULT_CONFIG else Path(config).name


def variant_of(data: Result, field: str) -> tuple[str, str]:
    """What a variant's subsection is called: ``field``'s value, or the config it ran when not the default.

    A result of another config than the benchmark's default is a recipe of its own:
    ``("config", "pipeline-fast.yaml")``, with its ``field`` value added when it is not ``none``.
    """
    value = str(data.get(field) or "none")
    config = other_config(data)
    if config is None:
        return field, value
    return "config", config + ("" if value == "none" else f", {field} {value}")


def by_config(results: list[Result]) -> tuple[list[Result], dict[str, list[Result]]]:
    """The results of the default config, and those of each other config by the config file's name."""
    default: list[Result] = []
    others: dict[str, list[Result]] = {}
    for data in results:
        config = other_config(data)
        if config is None:
            default.append(data)
        else:
            others.setdefault(config, []).append(data)
    return default, others


def per_variant(
    kind: str, results: list[Result], field: str, render: Callable[[Result], list[str]]
) -> list[str]:
    """A subsection per variant, the baseline (``none`` of the default config) first: its latest result."""
    variants: dict[tuple[str, str], list[Result]] = {}
    for data in results:
        variants.setdefault(variant_of(data, field), []).append(data)
    lines: list[str] = []
    for label, value in sorted(variants, key=lambda v: (v != (field, "none"), v[0] != field, v)):
        data = latest(variants[label, value])
        lines += [f"### {label} `{value}`", "", *provenance(kind, data), *render(data)]
    return lines


Section = tuple[str, str, str, Callable[[Result], list[str]]]
SECTIONS: list[Section] = [
    (
        "quality",
        "Model quality",
        "Holdout quality of every family over several seeds: the default pipeline config, then any other "
        "config measured.",
        quality_section,
    ),
    (
        "crossval",
        "Cross-validation",
        "The training recipe over stratified folds of dataset.csv: the spread a modelling choice has to "
        "beat, measured without touching the holdout. The default config first, then its variants.",
        crossval_section,
    ),
    (
        "unseen_topics",
        "Unseen topics of `other`",
        "How a recipe tags a machine-learning topic its training data never showed: dataset.csv's "
        "`other` is three finer topics, the label guide's a dozen more, and text in the wild brings them.",
        unseen_topics_section,
    ),
    (
        "warehouse",
        "Warehouse build",
        "`tagops data build` on the real data: a first build in a fresh home, then rebuilds of the same "
        "sources (docs/data.md).",
        warehouse_section,
    ),
    (
        "label_audit",
        "Label audit",
        "`tagops data audit` on the real files, and what it finds of wrong tags planted in dataset.csv "
        "(docs/data.md, Audit labels).",
        label_audit_section,
    ),
    (
        "serve",
        "Serving latency and throughput",
        "The raw in-process predictor, uvicorn and Ray Serve on the same model, one real holdout item "
        "per request from a load generator on the same machine (docs/serving.md).",
        serve_section,
    ),
    (
        "serve-defaults",
        "Serving as built, beside MLflow",
        "The champion `make run` registers, served with `tagops serve`'s defaults on both engines and "
        "with `mlflow models serve` (what a user would try first): cold start, latency and throughput "
        "(docs/serving.md, Settings chosen for the model).",
        serve_defaults_section,
    ),
    (
        "serve_lifecycle",
        "Stop and restart under a supervisor",
        "Each engine stopped with SIGTERM and restarted on the same port, the signal sent to the process "
        "or to its process group (docs/serving.md, Stopping under a supervisor).",
        lifecycle_section,
    ),
    (
        "serve_resilience",
        "Serving under failure",
        "The prediction log under load, a replica killed with SIGKILL, a model reload under load.",
        resilience_section,
    ),
    (
        "serve_canary",
        "Canary rollout",
        "A challenger answering a sticky share of live requests, then aborted and promoted under load "
        "(docs/loop.md, Canary rollout).",
        canary_section,
    ),
    (
        "serve_fuzz",
        "API fuzzing",
        "schemathesis against a live server: valid and invalid requests for every operation.",
        fuzz_section,
    ),
    (
        "serve_hostile",
        "Worst-case input",
        "Bodies that fill every request limit with text built to be expensive, sent to a live server while "
        "other clients predict and `/healthz` is polled (docs/serving.md, Large and hostile input).",
        hostile_section,
    ),
    (
        "serve_overload",
        "Overload",
        "Far more concurrent clients than a server works on at once (`max_ongoing_requests`): quick 503s "
        "with `Retry-After` instead of a queue that grows memory (docs/serving.md).",
        overload_section,
    ),
    (
        "console",
        "Web console",
        "The console's predict page against the JSON API it renders, on the same server: what the HTML "
        "costs a person waiting for it (docs/serving.md, Web console).",
        console_section,
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
        elif kind in PER_VARIANT and results:
            lines += per_variant(kind, results, PER_VARIANT[kind], render)
        elif results:
            default, others = by_config(results) if kind in BY_CONFIG else (results, {})
            if default:
                lines += [*provenance(kind, latest(default)), *render(latest(default))]
            else:
                lines += not_measured(kind)
            for name in sorted(others):
                data = latest(others[name])
                lines += [f"### config `{name}`", "", *provenance(kind, data), *render(data)]
        else:
            lines += not_measured(kind)
    return "\n".join(lines).rstrip() + "\n"


def summary_rows(found: dict[str, list[Result]]) -> list[list[str]]:
    """The README's rows: quality and training time per family, serving, resilience, the loop."""
    missing = ["not measured yet", "–"]
    rows: list[list[str]] = []
    quality = latest(by_config(found.get("quality", []))[0])
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
    built = latest(found.get("serve-defaults", []))
    checks = built.get("bar") or {}
    if checks:
        shown = [e for e in ("uvicorn", "ray") if e in checks]

        def measured(name: str, spec: str, suffix: str) -> str:
            return " / ".join(num((checks[e].get(name) or {}).get("value"), spec, suffix) for e in shown)

        met = all(check.get("met") for named in checks.values() for check in named.values())
        figure = [
            f"{measured('throughput_ratio_to_mlflow', '.2f', 'x')} MLflow's requests/s, ready in "
            f"{measured('cold_start_s', '.1f', ' s')}: {verdict(met)}",
            day(built),
        ]
        engines = " / ".join(shown)
        what = f"`tagops serve` as built ({engines}) vs `mlflow models serve`, `make run`'s champion"
        rows.append([what, "≥ 2.5x, ≤ 5 s / ≤ 10 s", *figure])
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
