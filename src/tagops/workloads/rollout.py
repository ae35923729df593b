"""Canary rollout: the evidence that the challenger answering live traffic is no worse, and the policy.

The service routes a sticky share of requests to the canary and records, per deployment, the requests
each side answered and failed (:class:`tagops.serving.state.RolloutRecord`); every prediction row names
the model that answered it. :func:`rollout_report` puts the two sides side by side since the rollout
started: error rate with Wilson intervals, latency percentiles, weighted F1 on the predictions that got a
trusted label (the trust rules of :mod:`tagops.predlog.feedback`) with bootstrap intervals, and the
interval of the F1 difference, resampling each side independently (they answered different requests).
Where the challenger also runs in shadow, agreement on the champion's requests is reported too.
:func:`rollout_decision` applies :class:`tagops.config.RolloutPolicy` to that report.

The sides answer different requests, so the F1 difference is unpaired and its interval wider than a
shadow comparison's; it is the price of measuring the challenger's own answers as users receive them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from tagops.errors import TagopsError

if TYPE_CHECKING:
    from tagops.config import RolloutConfig, RolloutPolicy
    from tagops.serving.state import RolloutRecord
    from tagops.settings import Settings

SIDES = ("champion", "canary")


class RolloutCommandError(TagopsError):
    """A rollout command cannot run (no rollout, no service configured, the service refused)."""


def wilson_interval(failures: int, total: int, z: float = 1.96) -> list[float] | None:
    """95 % Wilson score interval of a proportion (``None`` without observations)."""
    if total <= 0:
        return None
    p = failures / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _latency(values: list[float], *, samples: int, seed: int) -> dict[str, Any]:
    """p50, p95 and p99, and a percentile bootstrap interval of the p95."""
    array = np.asarray(values, dtype=float)
    summary: dict[str, Any] = {
        f"p{p}": float(np.quantile(array, p / 100)) if array.size else None for p in (50, 95, 99)
    }
    summary["p95_ci95"] = None
    if array.size and samples > 0:
        rng = np.random.default_rng(seed)
        chunk = max(1, 2_000_000 // array.size)  # resamples per step: memory bounded by rows, not samples
        resampled = np.concatenate(
            [
                np.quantile(
                    array[rng.integers(0, array.size, size=(min(chunk, samples - i), array.size))],
                    0.95,
                    axis=1,
                )
                for i in range(0, samples, chunk)
            ]
        )
        summary["p95_ci95"] = [float(np.quantile(resampled, 0.025)), float(np.quantile(resampled, 0.975))]
    return summary


def trusted_labels(labelled: list[dict[str, Any]]) -> dict[str, str]:
    """Prediction id → its latest trusted or accepted label (waiting, rejected and revoked ones left out)."""
    from tagops.predlog.feedback import standing

    found: dict[str, str] = {}
    for row in sorted(labelled, key=lambda r: (r["feedback_at"], str(r["feedback_id"]))):
        if standing(row)[1] is not None:
            found[str(row["prediction_id"])] = str(row["feedback_tag"])
    return found


def rollout_report(
    record: RolloutRecord,
    answers: list[dict[str, Any]],
    labels: dict[str, str],
    *,
    agreement: float | None = None,
    agreement_rows: int = 0,
    bootstrap_samples: int,
    seed: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Champion and canary side by side since the rollout started (see the module's docstring).

    ``answers`` are :meth:`~tagops.predlog.reader.LogReader.read_answers` rows of both models since the
    start; ``labels`` maps a prediction id to its trusted label.
    """
    from tagops.metrics import bootstrap_ci, bootstrap_f1_difference_unpaired, weighted_f1

    uris = {"champion": record.champion_uri, "canary": record.model_uri}
    counts = {
        "champion": (record.champion_answered, record.champion_failed),
        "canary": (record.canary_answered, record.canary_failed),
    }
    sides: dict[str, dict[str, Any]] = {}
    truths: dict[str, tuple[list[str], list[str]]] = {}
    for side in SIDES:
        rows = [r for r in answers if r["model_uri"] == uris[side]]
        answered, failed = counts[side]
        labelled = [r for r in rows if str(r["id"]) in labels]
        truth = [labels[str(r["id"])] for r in labelled]
        predicted = [str(r["tag"]) for r in labelled]
        truths[side] = (truth, predicted)
        requests = answered + failed
        sides[side] = {
            "model_uri": uris[side],
            "version": record.champion_version if side == "champion" else record.model_version,
            "requests": requests,
            "failed": failed,
            "error_rate": failed / requests if requests else None,
            "error_rate_ci95": wilson_interval(failed, requests),
            "predictions": len(rows),
            "latency_ms": _latency(
                [float(r["latency_ms"]) for r in rows], samples=bootstrap_samples, seed=seed
            ),
            "labelled": len(labelled),
            "f1": weighted_f1(truth, predicted) if truth else None,
            "f1_ci95": bootstrap_ci(truth, predicted, samples=bootstrap_samples, seed=seed),
        }
    share = sides["canary"]["requests"] / max(1, sides["canary"]["requests"] + sides["champion"]["requests"])
    f1_difference = None
    if sides["canary"]["f1"] is not None and sides["champion"]["f1"] is not None:
        f1_difference = float(sides["canary"]["f1"]) - float(sides["champion"]["f1"])
    return {
        "kind": "tagops.rollout",
        "created_at": (now or datetime.now(UTC)).isoformat(),
        "state": record.state,
        "reason": record.reason,
        "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat() if record.ended_at else None,
        "weight": record.weight,
        "canary_share": share,
        "champion": sides["champion"],
        "canary": sides["canary"],
        "f1_difference": f1_difference,
        "f1_difference_ci95": bootstrap_f1_difference_unpaired(
            *truths["champion"], *truths["canary"], samples=bootstrap_samples, seed=seed
        ),
        "agreement": agreement,
        "agreement_ci95": None
        if agreement is None
        else wilson_interval(round(agreement * agreement_rows), agreement_rows),
        "agreement_rows": agreement_rows,
    }


def rollout_decision(report: dict[str, Any], policy: RolloutPolicy) -> tuple[str, str]:
    """``(promote | abort | continue, why)`` for a report of an active rollout, by ``policy``."""
    champion, canary = report["champion"], report["canary"]
    if canary["requests"] >= policy.min_requests:
        low = canary["error_rate_ci95"][0]
        champion_high = champion["error_rate_ci95"][1] if champion["error_rate_ci95"] else 0.0
        if low > max(policy.max_error_rate, champion_high):
            return "abort", (
                f"canary error rate {canary['error_rate']:.2%} (95 % interval from {low:.2%}) is above "
                f"max_error_rate {policy.max_error_rate:.2%} and the champion's "
                f"{champion['error_rate'] or 0:.2%}"
            )
        c95, h95 = canary["latency_ms"]["p95"], champion["latency_ms"]["p95"]
        if (
            c95 is not None
            and h95
            and c95 > policy.max_latency_ratio * h95
            and c95 - h95 > policy.latency_slack_ms
        ):
            return "abort", (
                f"canary p95 latency {c95:.1f} ms is over {policy.max_latency_ratio}x the champion's "
                f"{h95:.1f} ms"
            )
    interval = report["f1_difference_ci95"]
    enough = min(canary["labelled"], champion["labelled"]) >= policy.min_labelled
    if not enough or interval is None:
        return "continue", (
            f"{canary['labelled']} canary and {champion['labelled']} champion predictions have a trusted "
            f"label; {policy.min_labelled} each are needed"
            + (
                f"; {canary['requests']} canary requests of the {policy.min_requests} the error and latency "
                "checks need"
                if canary["requests"] < policy.min_requests
                else ""
            )
        )
    lower, upper = interval
    if upper < -policy.f1_margin:
        return "abort", (
            f"canary F1 is worse by more than {policy.f1_margin} at 95 % confidence "
            f"(difference in [{lower:+.4f}, {upper:+.4f}])"
        )
    if lower >= -policy.f1_margin and canary["requests"] >= policy.min_requests:
        return "promote", (
            f"canary no worse at 95 % confidence: F1 difference in [{lower:+.4f}, {upper:+.4f}] "
            f"(margin {policy.f1_margin}) on {canary['labelled']}/{champion['labelled']} labelled predictions"
        )
    return (
        "continue",
        f"F1 difference in [{lower:+.4f}, {upper:+.4f}]: not yet decided at margin {policy.f1_margin}",
    )


def current_rollout(cfg: RolloutConfig, settings: Settings) -> dict[str, Any]:
    """The latest rollout in the prediction log's database and its report (``{}``: none yet)."""
    from tagops.predlog.log import PredictionLog
    from tagops.serving.state import ServingState

    with PredictionLog.from_config(cfg, settings) as log:
        state = ServingState(log.engine)
        state.create_tables()
        record = state.latest_rollout()
        if record is None:
            return {}
        until = record.ended_at or datetime.now(UTC)
        answers = log.reader.read_answers(
            since=record.started_at, until=until, model_uris=[record.champion_uri, record.model_uri]
        )
        labels = trusted_labels(log.reader.read_labelled(since=record.started_at))
        pairs = _shadow_pairs(log.reader, record, until)
    agreement = float(np.mean([r["tag"] == r["shadow_tag"] for r in pairs])) if pairs else None
    report = rollout_report(
        record,
        answers,
        labels,
        agreement=agreement,
        agreement_rows=len(pairs),
        bootstrap_samples=cfg.bootstrap_samples,
        seed=cfg.seed,
    )
    report["deployment_id"] = record.deployment_id
    return report


def _shadow_pairs(reader: Any, record: RolloutRecord, until: datetime) -> list[dict[str, Any]]:
    """Champion requests the canary's model also answered in shadow."""
    return [
        r
        for r in reader.read_shadow_pairs(since=record.started_at, until=until)
        if r["shadow_model_uri"] == record.model_uri
    ]


# ---------------------------------------------------------------------------------------- service
def service_call(
    method: str, path: str, cfg: RolloutConfig, settings: Settings, **kwargs: Any
) -> dict[str, Any]:
    """Call the running service's admin API; a refusal or an unreachable service is an error."""
    import httpx

    url = settings.retrain.service_url or cfg.service_url
    key = settings.retrain.admin_key
    if not url:
        raise RolloutCommandError(
            "no service to talk to: set TAGOPS_RETRAIN_SERVICE_URL (or service_url in the rollout config)"
        )
    if not key:
        raise RolloutCommandError("no admin key: set TAGOPS_RETRAIN_ADMIN_KEY (`tagops keys create --admin`)")
    try:
        response = httpx.request(
            method,
            f"{url.rstrip('/')}{path}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=cfg.timeout_s,
            **kwargs,
        )
    except httpx.HTTPError as error:
        raise RolloutCommandError(f"{method} {url}{path} failed: {error}") from error
    if response.status_code != 200:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:500]
        raise RolloutCommandError(f"{method} {path} answered {response.status_code}: {detail}")
    body: dict[str, Any] = response.json()
    return body
