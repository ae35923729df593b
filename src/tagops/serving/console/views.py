"""What each console page shows, as plain data: pure functions over the service's answers and the files read.

Reports and histories come from files and a registry; every value is checked for its type here, so a
template never fails on a report of another shape, it shows a dash instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: Per-class scores the model card shows, in order.
CLASS_SCORES = ("precision", "recall", "f1")


def as_float(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` (missing, not a number, NaN)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def as_int(value: Any) -> int | None:
    """``value`` as an int, or ``None``."""
    number = as_float(value)
    return None if number is None else int(number)


def as_text(value: Any) -> str | None:
    """``value`` as text, or ``None`` when it is missing."""
    return None if value is None else str(value)


def as_interval(value: Any) -> tuple[float, float] | None:
    """A ``[low, high]`` pair of numbers, or ``None``."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    low, high = as_float(value[0]), as_float(value[1])
    return None if low is None or high is None else (low, high)


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a dict, else an empty one."""
    return value if isinstance(value, dict) else {}


# ------------------------------------------------------------------------------------------- predict
@dataclass(frozen=True)
class Probability:
    """One tag's probability in an answer."""

    tag: str
    probability: float
    chosen: bool


@dataclass(frozen=True)
class Answer:
    """One prediction as the predict page shows it."""

    prediction_id: str
    tag: str
    confidence: float
    abstained: bool
    #: The most likely tag, which the answer would have been without abstention.
    top_tag: str
    threshold: float | None
    probabilities: list[Probability]
    model_version: int | None
    model_family: str


def build_answer(prediction: dict[str, Any], *, threshold: float | None, model: dict[str, Any]) -> Answer:
    """The view of one ``/v1/predict`` answer item, probabilities sorted from the most likely."""
    probabilities = {str(k): float(v) for k, v in as_dict(prediction.get("probabilities")).items()}
    ranked = sorted(probabilities.items(), key=lambda pair: (-pair[1], pair[0]))
    tag = str(prediction["tag"])
    return Answer(
        prediction_id=str(prediction["prediction_id"]),
        tag=tag,
        confidence=float(prediction["confidence"]),
        abstained=bool(prediction["abstained"]),
        top_tag=ranked[0][0] if ranked else tag,
        threshold=threshold,
        probabilities=[Probability(label, value, label == tag) for label, value in ranked],
        model_version=as_int(model.get("version")),
        model_family=str(model.get("family", "unknown")),
    )


# ---------------------------------------------------------------------------------------- model card
@dataclass(frozen=True)
class ClassRow:
    """One class of the holdout: its scores (``None``: not recorded) and support."""

    label: str
    precision: float | None
    recall: float | None
    f1: float | None
    support: int | None


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin of the reliability diagram."""

    low: float
    high: float
    count: int
    accuracy: float
    confidence: float


@dataclass(frozen=True)
class Evaluation:
    """Holdout scores of the served model: from its full report when there is one, else the run's metrics."""

    #: ``report``: the evaluation report saved at registration; ``metrics``: the run's logged metrics only.
    source: str
    overall: dict[str, float | None]
    f1_ci95: tuple[float, float] | None
    num_samples: int | None
    classes: list[ClassRow]
    confusion_labels: list[str] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    ece: float | None = None
    ece_ci95: tuple[float, float] | None = None
    bins: list[ReliabilityBin] = field(default_factory=list)
    threshold: float | None = None

    @property
    def empty(self) -> bool:
        """Nothing at all is known of the holdout."""
        return not any(v is not None for v in self.overall.values()) and not self.classes


def evaluation_from_report(report: dict[str, Any], labels: list[str]) -> Evaluation:
    """The model card's evaluation from an evaluation report (``tagops.metrics.EvalReport`` as JSON)."""
    overall = as_dict(report.get("overall"))
    per_class = as_dict(report.get("per_class"))
    order = [label for label in labels if label in per_class] + sorted(set(per_class) - set(labels))
    classes = [
        ClassRow(
            label=str(label),
            precision=as_float(as_dict(per_class[label]).get("precision")),
            recall=as_float(as_dict(per_class[label]).get("recall")),
            f1=as_float(as_dict(per_class[label]).get("f1")),
            support=as_int(as_dict(per_class[label]).get("num_samples")),
        )
        for label in order
    ]
    confusion = as_dict(report.get("confusion_matrix"))
    matrix_labels = [str(label) for label in confusion.get("labels", []) if isinstance(label, str)]
    rows = confusion.get("matrix", [])
    matrix = (
        [[as_int(v) or 0 for v in row] for row in rows]
        if isinstance(rows, list)
        and len(rows) == len(matrix_labels)
        and all(isinstance(row, list) and len(row) == len(matrix_labels) for row in rows)
        else []
    )
    calibration = as_dict(report.get("calibration"))
    bins = []
    for item in calibration.get("bins", []) if isinstance(calibration.get("bins"), list) else []:
        values = [as_float(as_dict(item).get(k)) for k in ("low", "high", "count", "accuracy", "confidence")]
        if all(v is not None for v in values):
            low, high, count, accuracy, confidence = (float(v or 0.0) for v in values)
            bins.append(ReliabilityBin(low, high, int(count), accuracy, confidence))
    return Evaluation(
        source="report",
        overall={k: as_float(overall.get(k)) for k in ("f1", "macro_f1", "precision", "recall", "accuracy")},
        f1_ci95=as_interval(overall.get("f1_ci95")),
        num_samples=as_int(overall.get("num_samples")),
        classes=classes,
        confusion_labels=matrix_labels if matrix else [],
        confusion=matrix,
        ece=as_float(calibration.get("ece")),
        ece_ci95=as_interval(calibration.get("ece_ci95")),
        bins=[b for b in bins if b.count > 0],
        threshold=as_float(report.get("threshold")),
    )


def evaluation_from_metrics(metrics: dict[str, float], labels: list[str]) -> Evaluation:
    """The model card's evaluation from the run's flat holdout metrics (``overall.f1``, ``per_class.*``)."""
    classes = [
        ClassRow(label, None, None, as_float(metrics.get(f"per_class.{label}.f1")), None)
        for label in labels
        if f"per_class.{label}.f1" in metrics
    ]
    return Evaluation(
        source="metrics",
        overall={
            k: as_float(metrics.get(f"overall.{k}"))
            for k in ("f1", "macro_f1", "precision", "recall", "accuracy")
        },
        f1_ci95=None,
        num_samples=as_int(metrics.get("overall.num_samples")),
        classes=classes,
        ece=as_float(metrics.get("ece")),
    )


@dataclass(frozen=True)
class ModelCard:
    """The served model: identity, provenance, how it answers, and its holdout evaluation."""

    name: str | None
    version: int | None
    alias: str | None
    uri: str
    family: str
    labels: list[str]
    run_id: str | None
    dataset_sha256: str | None
    threshold: float | None
    threshold_source: str | None
    temperature: float | None
    loaded_at: str
    evaluation: Evaluation


def build_model_card(
    *,
    ref: dict[str, Any],
    uri: str,
    info: dict[str, Any],
    metadata: dict[str, Any],
    holdout_metrics: dict[str, float],
    loaded_at: str,
    report: dict[str, Any] | None,
) -> ModelCard:
    """The model card of a served model (its ``ref()``, ``info``, metadata and holdout report, if any)."""
    labels = [str(label) for label in info.get("labels", [])]
    evaluation = (
        evaluation_from_report(report, labels)
        if report is not None and isinstance(report.get("per_class"), dict)
        else evaluation_from_metrics(holdout_metrics, labels)
    )
    return ModelCard(
        name=as_text(ref.get("name")),
        version=as_int(ref.get("version")),
        alias=as_text(ref.get("alias")),
        uri=uri,
        family=str(ref.get("family", "unknown")),
        labels=labels,
        run_id=as_text(metadata.get("run_id")),
        dataset_sha256=as_text(metadata.get("dataset_sha256")),
        threshold=as_float(info.get("threshold")),
        threshold_source=as_text(info.get("threshold_source")),
        temperature=as_float(info.get("temperature")),
        loaded_at=loaded_at,
        evaluation=evaluation,
    )


# ---------------------------------------------------------------------------------------- monitoring
@dataclass(frozen=True)
class DriftTestRow:
    """One drift test of a monitor window."""

    name: str
    kind: str
    method: str
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None
    drift: bool
    skipped: str | None


@dataclass(frozen=True)
class MonitorWindow:
    """One ``tagops monitor`` window as its summary records it."""

    folder: str
    created_at: str | None
    since: str | None
    until: str | None
    model_version: int | None
    num_rows: int | None
    alarm: bool
    drift_alarm: bool
    performance_alarm: bool
    drifted: list[str]
    alpha: float | None
    correction: str | None
    skipped: str | None
    tests: list[DriftTestRow]
    feedback_rows: int | None
    feedback_f1: float | None
    feedback_f1_ci95: tuple[float, float] | None
    holdout_f1: float | None
    feedback_skipped: str | None


def build_monitor_window(summary: dict[str, Any]) -> MonitorWindow:
    """The view of one monitor ``summary.json``."""
    tests = [
        DriftTestRow(
            name=str(test.get("name", "?")),
            kind=str(test.get("kind", "")),
            method=str(test.get("method", "")),
            statistic=as_float(test.get("statistic")),
            p_value=as_float(test.get("p_value")),
            p_adjusted=as_float(test.get("p_adjusted")),
            drift=test.get("drift") is True,
            skipped=as_text(test.get("skipped")),
        )
        for test in summary.get("tests", [])
        if isinstance(test, dict)
    ]
    performance = as_dict(summary.get("performance"))
    drifted = summary.get("drifted", [])
    return MonitorWindow(
        folder=str(summary.get("folder", "")),
        created_at=as_text(summary.get("created_at")),
        since=as_text(summary.get("since")),
        until=as_text(summary.get("until")),
        model_version=as_int(summary.get("model_version")),
        num_rows=as_int(summary.get("num_rows")),
        alarm=summary.get("alarm") is True,
        drift_alarm=summary.get("drift_alarm") is True,
        performance_alarm=summary.get("performance_alarm") is True,
        drifted=[str(name) for name in drifted] if isinstance(drifted, list) else [],
        alpha=as_float(summary.get("alpha")),
        correction=as_text(summary.get("correction")),
        skipped=as_text(summary.get("skipped")),
        tests=tests,
        feedback_rows=as_int(performance.get("feedback_rows")),
        feedback_f1=as_float(performance.get("f1")),
        feedback_f1_ci95=as_interval(performance.get("f1_ci95")),
        holdout_f1=as_float(performance.get("holdout_f1")),
        feedback_skipped=as_text(performance.get("skipped")),
    )


@dataclass(frozen=True)
class PromotionEvent:
    """One record of the promotion history: a gate decision, a promotion or a rollback."""

    time: str | None
    action: str
    version: int | None
    champion: int | None
    previous_champion: int | None
    reason: str | None
    challenger_f1: float | None
    champion_f1: float | None
    trigger: str | None


def build_promotion_event(record: dict[str, Any]) -> PromotionEvent:
    """The view of one promotion history record."""
    return PromotionEvent(
        time=as_text(record.get("time")),
        action=str(record.get("action", "?")),
        version=as_int(record.get("version")),
        champion=as_int(record.get("champion")),
        previous_champion=as_int(record.get("previous_champion")),
        reason=as_text(record.get("reason")),
        challenger_f1=as_float(record.get("challenger_f1")),
        champion_f1=as_float(record.get("champion_f1")),
        trigger=as_text(record.get("trigger")),
    )
