"""Monitoring one window of the prediction log against the serving model's reference statistics.

``tagops monitor [--since ISO] [--until ISO] [--model URI] [--output DIR] [--config FILE]`` reads the
predictions (and their feedback) of the window from the serving database, measures them as the model's
``reference_stats.json`` was measured, runs the drift tests, and writes ``summary.json`` and
``report.html``; it logs the numbers as an MLflow run and, on an alarm, logs an error line and POSTs the
summary to ``MonitorConfig.webhook_url``. A failed webhook is logged, never raised: monitoring must not
fail because the alert receiver is down.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired

import numpy as np

from tagops.errors import TagopsError
from tagops.model_ref import ModelRef
from tagops.monitoring.drift import DriftSummary
from tagops.workloads.stages import Stage, run_stages

if TYPE_CHECKING:
    from tagops.config import MonitorConfig
    from tagops.monitoring.drift import DriftReport
    from tagops.predlog.reader import LogReader
    from tagops.registry.client import Registry
    from tagops.settings import Settings

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Window:
    """The predictions of one time window, as the drift tests read them."""

    since: datetime
    until: datetime
    texts: list[str]
    predicted_tags: list[str]
    confidences: list[float]
    #: ``(feedback tag, predicted tag)`` for the predictions that received feedback.
    feedback: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The window as JSON (times in ISO 8601)."""
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "texts": self.texts,
            "predicted_tags": self.predicted_tags,
            "confidences": self.confidences,
            "feedback": [list(pair) for pair in self.feedback],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        """The window :meth:`to_json` wrote."""
        return cls(
            since=datetime.fromisoformat(data["since"]),
            until=datetime.fromisoformat(data["until"]),
            texts=list(data["texts"]),
            predicted_tags=list(data["predicted_tags"]),
            confidences=[float(c) for c in data["confidences"]],
            feedback=[(str(t), str(p)) for t, p in data["feedback"]],
        )


class MonitorSummary(DriftSummary):
    """``summary.json`` of one monitoring window: the tests' outcome, the window and the model."""

    kind: str
    created_at: str
    since: str
    until: str
    model_uri: str
    model_version: int | None
    #: The MLflow run the window's numbers were logged to, when they were.
    mlflow_run_id: NotRequired[str | None]


@dataclass
class MonitorResult:
    """What ``tagops monitor`` produced."""

    summary: MonitorSummary
    summary_path: Path
    report_path: Path
    run_id: str | None = None
    alert_sent: bool | None = None


# ------------------------------------------------------------------------------------------ window
def resolve_window(
    since: datetime | None, until: datetime | None, cfg: MonitorConfig
) -> tuple[datetime, datetime]:
    """``[since, until)``: ``until`` defaults to now, ``since`` to ``window_hours`` before it."""
    end = until or datetime.now(UTC)
    start = since or end - timedelta(hours=cfg.window_hours)
    if start >= end:
        raise TagopsError(f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})")
    return start, end


def top_answer(row: dict[str, Any]) -> tuple[str, float]:
    """The top tag and its probability, ignoring abstention.

    The reference was measured without an abstain threshold, and serving may abstain to ``other``; the
    logged probabilities give back the model's own answer, so a threshold is not mistaken for drift.
    """
    probabilities = row.get("probabilities") or {}
    if isinstance(probabilities, dict) and probabilities:
        tag = max(probabilities, key=lambda k: float(probabilities[k]))
        return str(tag), float(probabilities[tag])
    return str(row["tag"]), float(row["confidence"])


def read_window(
    reader: LogReader, *, since: datetime, until: datetime, model_version: int | None = None
) -> Window:
    """The window's predictions and the feedback they received, from the prediction log (read-only)."""
    from tagops.data.clean import build_text

    rows = reader.read_predictions(since=since, until=until, model_version=model_version)
    feedback = reader.read_trusted_feedback([str(r["id"]) for r in rows])
    texts, tags, confidences, pairs = [], [], [], []
    for row in rows:
        tag, confidence = top_answer(row)
        texts.append(build_text(row["title"], row["description"]))
        tags.append(tag)
        confidences.append(confidence)
        if str(row["id"]) in feedback:
            pairs.append((feedback[str(row["id"])], tag))
    return Window(since, until, texts, tags, confidences, pairs)


# --------------------------------------------------------------------------------------- reference
def load_reference_stats(
    model_uri: str, settings: Settings, *, registry: Registry | None = None
) -> tuple[dict[str, Any], int | None]:
    """The reference statistics stored with a model, and its registry version (``None`` for a file).

    ``model_uri`` is ``models:/NAME@ALIAS``, ``models:/NAME/N``, a ``reference_stats.json`` file or a
    folder holding one.
    """
    from tagops.monitoring.reference import check_reference
    from tagops.registry.client import REFERENCE_STATS_FILE

    if not ModelRef.parse(model_uri).in_registry:
        path = Path(model_uri)
        path = path / REFERENCE_STATS_FILE if path.is_dir() else path
        if not path.is_file():
            raise TagopsError(f"{model_uri}: neither a models:/ URI nor a {REFERENCE_STATS_FILE} file")
        try:
            reference = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise TagopsError(f"{path}: cannot read reference statistics: {error}") from error
        version = None
    else:
        from tagops.registry.client import Registry

        registry = registry or Registry(settings)
        version, info = registry.resolve(model_uri)
        if not info["run_id"]:
            raise TagopsError(
                f"{model_uri}: version {version} has no MLflow run holding reference statistics"
            )
        reference = registry.load_run_dict(info["run_id"], REFERENCE_STATS_FILE)
    try:
        check_reference(reference, source=model_uri)
    except ValueError as error:
        raise TagopsError(str(error)) from error
    return reference, version


# ----------------------------------------------------------------------------------------- analysis
def analyse_window(
    reference: dict[str, Any], window: Window, cfg: MonitorConfig, *, embedder: Any = None
) -> tuple[DriftReport, dict[str, Any]]:
    """Measure the window as the reference was, run the tests; returns the report and the window features.

    ``embedder``: an already loaded embedder (reused across windows); by default the one the reference
    names is created.
    """
    from tagops.monitoring.drift import detect_drift
    from tagops.monitoring.reference import create_embedder, window_stats

    stored = reference.get("embedding")
    if embedder is None and stored is not None and len(window.texts) >= cfg.min_window_rows:
        embedder = create_embedder(stored["embedder"])
    features = window_stats(
        window.texts,
        window.predicted_tags,
        window.confidences,
        reference,
        embedder=embedder,
        feedback=window.feedback,
        max_embedding_rows=cfg.max_embedding_rows,
        seed=cfg.seed,
    )
    return detect_drift(reference, features, cfg), features


def summarize(
    report: DriftReport, window: Window, *, model_uri: str, model_version: int | None
) -> MonitorSummary:
    """The JSON summary: the window, the model, and every test's outcome."""
    # ``mlflow_run_id`` joins once the window is logged to MLflow.
    summary: MonitorSummary = {
        "kind": "tagops.monitor",
        "created_at": datetime.now(UTC).isoformat(),
        "since": window.since.isoformat(),
        "until": window.until.isoformat(),
        "model_uri": model_uri,
        "model_version": model_version,
        **report.to_json(),  # type: ignore[typeddict-item]
    }
    return summary


def monitoring_metrics(report: DriftReport) -> dict[str, float]:
    """Flat numbers for MLflow: alarm flags, row counts, every test's statistic and p-values, F1."""
    metrics: dict[str, float] = {
        "alarm": float(report.alarm),
        "drift_alarm": float(report.drift_alarm),
        "performance_alarm": float(report.performance_alarm),
        "num_rows": float(report.num_rows),
    }
    if report.window.get("oov_token_rate") is not None:
        metrics["oov_token_rate"] = float(report.window["oov_token_rate"])
    mean_confidence = report.window.get("confidence", {}).get("mean")
    if mean_confidence is not None:
        metrics["confidence_mean"] = float(mean_confidence)
    for test in report.tests:
        for key in ("statistic", "p_value", "p_adjusted"):
            value = getattr(test, key)
            if value is not None:
                metrics[f"{test.name}.{key}"] = float(value)
    perf = report.performance or {}
    metrics["feedback_rows"] = float(perf.get("feedback_rows", 0))
    if perf.get("f1") is not None:
        metrics["feedback_f1"] = float(perf["f1"])
    return metrics


# ------------------------------------------------------------------------------------------ alerts
def send_alert(summary: MonitorSummary, url: str, *, timeout_s: float) -> bool:
    """POST the summary as JSON; ``False`` (logged) on any failure, never an exception."""
    import requests

    try:
        response = requests.post(url, json=summary, timeout=timeout_s)
        response.raise_for_status()
    except requests.RequestException as error:
        logger.error("monitor: alert webhook %s failed: %s", redacted_url(url), redact(str(error), url))
        return False
    logger.info("monitor: alert sent to webhook %s (HTTP %d)", redacted_url(url), response.status_code)
    return True


def redacted_url(url: str) -> str:
    """A webhook URL as logs may show it: scheme and host only (its path and query often hold a token)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/***" if parts.scheme else "***"


def redact(message: str, url: str) -> str:
    """``message`` without ``url`` or any part of it that can carry a secret (path, query, password)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    secrets = {url, parts.path, parts.query, parts.password or "", parts.netloc}
    if parts.query:
        secrets.add(f"{parts.path}?{parts.query}")
    for secret in sorted((s for s in secrets if len(s) > 1), key=len, reverse=True):
        message = message.replace(secret, "***")
    return message


def raise_alert(summary: MonitorSummary, cfg: MonitorConfig) -> bool | None:
    """Log the alarm and POST it to the configured webhook; ``None`` when no webhook is configured."""
    perf = summary.get("performance") or {}
    logger.error(
        "monitor: ALARM for %s (version %s), %s to %s: drift in %s; feedback F1 %s vs holdout %s",
        summary["model_uri"],
        summary["model_version"],
        summary["since"],
        summary["until"],
        ", ".join(summary["drifted"]) or "no test",
        perf.get("f1"),
        perf.get("holdout_f1"),
    )
    if cfg.webhook_url is None:
        return None
    return send_alert(summary, cfg.webhook_url, timeout_s=cfg.webhook_timeout_s)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ---------------------------------------------------------------------------------------- workload
def publish(
    report: DriftReport,
    window: Window,
    features: dict[str, Any],
    reference: dict[str, Any],
    cfg: MonitorConfig,
    *,
    output_dir: Path,
    model_uri: str,
    model_version: int | None,
    registry: Registry | None,
) -> MonitorResult:
    """Write the JSON summary and HTML report, log them to MLflow, and alert on an alarm."""
    from tagops.monitoring.report import write_monitor_report

    summary = summarize(report, window, model_uri=model_uri, model_version=model_version)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary_path = output_dir / SUMMARY_FILE
    summary_path.write_text(json.dumps(summary, indent=2, default=_json_default), encoding="utf-8")
    report_path = write_monitor_report(
        report,
        reference,
        features,
        output_dir / REPORT_FILE,
        title=f"tagops monitor: {model_uri}, {window.since:%Y-%m-%d %H:%M} to {window.until:%Y-%m-%d %H:%M}",
    )
    result = MonitorResult(summary, summary_path, report_path)
    if registry is not None:
        result.run_id = registry.log_monitoring(
            run_name=f"monitor-{window.until:%Y%m%d-%H%M%S}",
            metrics=monitoring_metrics(report),
            params={
                "config": cfg.model_dump(mode="json", exclude={"webhook_url", "database_url"}),
                "since": window.since.isoformat(),
                "until": window.until.isoformat(),
            },
            tags={"model_uri": model_uri, "model_version": str(model_version), "alarm": str(report.alarm)},
            files=[summary_path, report_path],
        )
        summary["mlflow_run_id"] = result.run_id
    if report.alarm:
        result.alert_sent = raise_alert(summary, cfg)
    else:
        logger.info("monitor: no alarm (%d rows, %s)", report.num_rows, report.skipped or "all tests run")
    return result


def reference_stage(
    settings: Settings, monitor: MonitorConfig, registry: Registry | None = None
) -> tuple[dict[str, Any], int | None]:
    """The reference statistics stored with the model the config names, and its registry version."""
    return load_reference_stats(monitor.model_uri, settings, registry=registry)


def window_stage(
    settings: Settings, monitor: MonitorConfig, since: str, until: str, model_version: int | None
) -> Window:
    """The window's predictions and feedback from the prediction log (read-only).

    Only the served version's predictions count when ``only_model_version`` is set (the default).
    """
    from tagops.predlog.log import PredictionLog

    with PredictionLog.from_config(monitor, settings) as log:
        log.create_tables()  # a fresh database has no log yet: an empty window, not a crash
        return read_window(
            log.reader,
            since=datetime.fromisoformat(since),
            until=datetime.fromisoformat(until),
            model_version=model_version if monitor.only_model_version else None,
        )


def monitor_stage(
    settings: Settings,
    monitor: MonitorConfig,
    reference: dict[str, Any],
    window: Window,
    model_version: int | None,
    output_dir: str,
    registry: Registry | None = None,
    log_to_mlflow: bool = True,
    embedder: Any = None,
) -> MonitorResult:
    """Run the drift tests; write the JSON summary and HTML report, log to MLflow, alert on an alarm."""
    if registry is None and log_to_mlflow:
        from tagops.registry.client import Registry

        registry = Registry(settings)
    report, features = analyse_window(reference, window, monitor, embedder=embedder)
    return publish(
        report,
        window,
        features,
        reference,
        monitor,
        output_dir=Path(output_dir),
        model_uri=monitor.model_uri,
        model_version=model_version,
        registry=registry if log_to_mlflow else None,
    )


def monitor_plan(
    cfg: MonitorConfig,
    *,
    since: datetime,
    until: datetime,
    output_dir: Path,
    registry: Registry | None = None,
    log_to_mlflow: bool = True,
    embedder: Any = None,
) -> list[Stage]:
    """The monitoring workload: the model's reference, the window of the log, the tests and the report."""
    shared = {"registry": registry} if registry is not None else {}
    extra = {"log_to_mlflow": log_to_mlflow, **({"embedder": embedder} if embedder is not None else {})}
    return [
        Stage(
            "reference_step",
            reference_stage,
            params={"monitor": cfg, **shared},
            outputs=("reference", "model_version"),
        ),
        Stage(
            "window_step",
            window_stage,
            inputs={"model_version": "model_version"},
            params={"monitor": cfg, "since": since.isoformat(), "until": until.isoformat()},
            outputs=("window",),
        ),
        Stage(
            "monitor_step",
            monitor_stage,
            inputs={"reference": "reference", "window": "window", "model_version": "model_version"},
            params={"monitor": cfg, "output_dir": str(output_dir), **shared, **extra},
            outputs=("result",),
        ),
    ]


def run_monitor(
    cfg: MonitorConfig,
    settings: Settings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    output_dir: Path | None = None,
    registry: Registry | None = None,
    log_to_mlflow: bool = True,
    embedder: Any = None,
) -> MonitorResult:
    """Monitor one window of the prediction log in this process (``tagops monitor --no-pipeline``).

    ``embedder``: an embedder already loaded (reused across windows); by default the reference's.
    """
    start, end = resolve_window(since, until, cfg)
    if registry is None and (log_to_mlflow or ModelRef.parse(cfg.model_uri).in_registry):
        from tagops.registry.client import Registry

        registry = Registry(settings)
    plan = monitor_plan(
        cfg,
        since=start,
        until=end,
        output_dir=output_dir or settings.reports_dir / f"monitor-{end:%Y%m%d-%H%M%S}",
        registry=registry,
        log_to_mlflow=log_to_mlflow,
        embedder=embedder,
    )
    result: MonitorResult = run_stages(plan, settings)["result"]
    return result
