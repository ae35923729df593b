"""Drift statistics: pure two-sample tests of a traffic window against a model's reference.

Data drift: KS on token counts, χ² on length buckets, χ² on per-text out-of-vocabulary buckets, MMD with
an RBF kernel on sentence embeddings. Prediction drift: χ² on predicted tags, KS on confidence. The one
alarm is family-wise (Holm or Bonferroni over ``MonitorConfig.alarm_tests``), so running six tests on
every window does not multiply the false alarms by six. Performance (weighted F1 on the rows that got
feedback, with a bootstrap interval) raises its own alarm.

The univariate tests are SciPy's. The MMD permutation test is written here, vectorised in NumPy, because
no maintained library fits this stack: alibi-detect 0.13 pins numpy<2 and transformers<5 (it would
downgrade both), frouros 0.9 pins older numpy/scipy/matplotlib, hyppo pulls numba, llvmlite and
statsmodels (~100 MB) for this one test, and torchdrift has had no release since 2021. The statistic is
the biased (V-statistic) MMD² with the median-heuristic bandwidth; the p-value counts permutations of
the pooled sample, which is exact under the null whatever estimator is used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

if TYPE_CHECKING:
    from tagops.config import MonitorConfig

DATA_TESTS = ("token_count", "length_bucket", "oov", "embedding")
PREDICTION_TESTS = ("predicted_tag", "confidence")


@dataclass(frozen=True)
class DriftTest:
    """One two-sample test of the window against the reference."""

    name: str
    kind: str  # "data" or "prediction"
    method: str
    statistic: float | None
    p_value: float | None
    #: After the family-wise correction (``None`` when the test is not part of the alarm or was skipped).
    p_adjusted: float | None = None
    drift: bool = False
    skipped: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


class DriftSummary(TypedDict):
    """The JSON summary of one monitoring window's tests (:meth:`DriftReport.to_json`)."""

    num_rows: int
    alarm: bool
    drift_alarm: bool
    performance_alarm: bool
    #: Names of the tests that rejected after correction.
    drifted: list[str]
    alpha: float
    correction: str
    #: Why the tests did not run (too few rows), else ``None``.
    skipped: str | None
    tests: list[dict[str, Any]]
    #: Feedback F1 against the reference's holdout F1, when the window has feedback.
    performance: dict[str, Any] | None
    #: The window's features as the reference measures them.
    window: dict[str, Any]


@dataclass(frozen=True)
class DriftReport:
    """Everything one monitoring window found; :meth:`to_json` is the JSON summary."""

    num_rows: int
    alpha: float
    correction: str
    tests: list[DriftTest]
    drift_alarm: bool
    performance: dict[str, Any] | None
    performance_alarm: bool
    skipped: str | None = None
    window: dict[str, Any] = field(default_factory=dict)

    @property
    def alarm(self) -> bool:
        """Whether anything should be alerted (drift or a drop in F1)."""
        return self.drift_alarm or self.performance_alarm

    def drifted(self) -> list[str]:
        """Names of the tests that rejected after correction."""
        return [t.name for t in self.tests if t.drift]

    def to_json(self) -> DriftSummary:
        """JSON-ready summary."""
        return {
            "num_rows": self.num_rows,
            "alarm": self.alarm,
            "drift_alarm": self.drift_alarm,
            "performance_alarm": self.performance_alarm,
            "drifted": self.drifted(),
            "alpha": self.alpha,
            "correction": self.correction,
            "skipped": self.skipped,
            "tests": [asdict(t) for t in self.tests],
            "performance": self.performance,
            "window": self.window,
        }


# ------------------------------------------------------------------------------------------- tests
def ks_test(reference: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov (SciPy; exact or asymptotic as SciPy chooses)."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(reference, dtype=float), np.asarray(window, dtype=float))
    return float(result.statistic), float(result.pvalue)


def chi2_counts(reference: list[int] | np.ndarray, window: list[int] | np.ndarray) -> tuple[float, float]:
    """χ² test of homogeneity on a 2 x K table of counts; categories empty in both are dropped.

    One category left means both samples are all in it: no evidence of a difference (p = 1).
    """
    from scipy.stats import chi2_contingency

    table = np.array([reference, window], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def rbf_bandwidth(pooled: np.ndarray, squared: np.ndarray) -> float:
    """Median heuristic: the median pairwise distance of the pooled sample (1 if all points coincide)."""
    upper = squared[np.triu_indices(len(pooled), k=1)]
    median = float(np.sqrt(np.median(upper))) if len(upper) else 0.0
    return median if median > 0 else 1.0


def mmd_permutation_test(
    reference: np.ndarray, window: np.ndarray, *, permutations: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """MMD² with an RBF kernel and its permutation p-value; returns ``(mmd2, p_value, bandwidth)``.

    The kernel matrix of the pooled sample is computed once; every permutation is a row of a 0/1
    membership matrix, so all permutation statistics come from one matrix product (benchmarks/drift.py
    times whole windows).
    """
    x, y = np.asarray(reference, dtype=float), np.asarray(window, dtype=float)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"embeddings must be 2-D with equal widths, got {x.shape} and {y.shape}")
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"the MMD test needs at least 2 rows per sample, got {m} and {n}")
    pooled = np.vstack([x, y])
    norms = (pooled**2).sum(axis=1)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2 * pooled @ pooled.T, 0.0)
    bandwidth = rbf_bandwidth(pooled, squared)
    kernel = np.exp(-squared / (2 * bandwidth**2))

    def statistics(member: np.ndarray) -> np.ndarray:
        # member: (B, m+n) with 1 for rows assigned to the reference side
        a = member / m
        b = (1 - member) / n
        ka, kb = a @ kernel, b @ kernel
        return np.asarray((ka * a).sum(1) + (kb * b).sum(1) - 2 * (ka * b).sum(1))

    observed = float(statistics(np.concatenate([np.ones(m), np.zeros(n)])[None, :])[0])
    rng = np.random.default_rng(seed)
    exceed = 0
    for start in range(0, permutations, 500):  # chunks bound memory at 500 x (m+n)
        size = min(500, permutations - start)
        order = rng.random((size, m + n)).argsort(axis=1)
        member = (order < m).astype(float)
        exceed += int((statistics(member) >= observed - 1e-12).sum())
    return observed, (exceed + 1) / (permutations + 1), bandwidth


def adjust_pvalues(p_values: list[float], method: str) -> list[float]:
    """Family-wise adjusted p-values (Holm step-down or Bonferroni), capped at 1, in input order."""
    count = len(p_values)
    if method == "bonferroni":
        return [min(1.0, p * count) for p in p_values]
    if method != "holm":
        raise ValueError(f"unknown correction {method!r}: use holm or bonferroni")
    order = np.argsort(p_values)
    adjusted = np.empty(count)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (count - rank) * p_values[index]))
        adjusted[index] = running
    return [float(v) for v in adjusted]


# -------------------------------------------------------------------------------------- the report
def _share(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {k: v / total for k, v in counts.items()}


def _performance(window: dict[str, Any], reference: dict[str, Any], cfg: MonitorConfig) -> dict[str, Any]:
    from tagops.metrics import bootstrap_ci, weighted_f1

    pairs = window["feedback"]
    result: dict[str, Any] = {
        "feedback_rows": len(pairs),
        "min_feedback_rows": cfg.min_feedback_rows,
        "holdout_f1": reference.get("holdout_f1"),
        "f1": None,
        "f1_ci95": None,
        "max_f1_drop": cfg.max_f1_drop,
    }
    if len(pairs) < cfg.min_feedback_rows:
        result["skipped"] = f"{len(pairs)} rows with feedback, fewer than {cfg.min_feedback_rows}"
        return result
    truth = [t for t, _ in pairs]
    predicted = [p for _, p in pairs]
    result["f1"] = weighted_f1(truth, predicted)
    result["f1_ci95"] = bootstrap_ci(truth, predicted, samples=cfg.bootstrap_samples, seed=cfg.seed)
    return result


def detect_drift(reference: dict[str, Any], window: dict[str, Any], cfg: MonitorConfig) -> DriftReport:
    """Run every test on ``window`` (from :func:`~tagops.monitoring.reference.window_stats`) and decide.

    Drift alarm: some test in ``cfg.alarm_tests`` has a family-wise adjusted p-value below ``cfg.alpha``.
    Performance alarm: with at least ``cfg.min_feedback_rows`` feedback rows, the upper end of the
    window's 95 % F1 interval lies more than ``cfg.max_f1_drop`` below the holdout F1 (a drop the
    window's own sampling noise cannot explain).
    """
    from tagops.monitoring.reference import check_reference, summarize_values

    check_reference(reference)
    rows = int(window["num_rows"])
    summary_window = {
        "token_counts": summarize_values(np.asarray(window["token_counts"], dtype=float)),
        "length_buckets": window["length_buckets"],
        "oov_token_rate": window["oov_token_rate"],
        "oov_buckets": window["oov_buckets"],
        "predicted_tags": window["predicted_tags"],
        "confidence": summarize_values(np.asarray(window["confidences"], dtype=float)),
        "embedded_rows": None if window["embedding"] is None else len(window["embedding"]),
    }
    performance = _performance(window, reference, cfg)
    holdout_f1 = performance["holdout_f1"]
    performance_alarm = bool(
        performance["f1_ci95"] is not None
        and holdout_f1 is not None
        and performance["f1_ci95"][1] < float(holdout_f1) - cfg.max_f1_drop
    )
    if rows < cfg.min_window_rows:
        return DriftReport(
            num_rows=rows,
            alpha=cfg.alpha,
            correction=cfg.correction,
            tests=[],
            drift_alarm=False,
            performance=performance,
            performance_alarm=performance_alarm,
            skipped=f"{rows} rows in the window, fewer than min_window_rows={cfg.min_window_rows}",
            window=summary_window,
        )
    tests = _run_tests(reference, window, cfg)
    alarm_indices = [i for i, t in enumerate(tests) if t.name in cfg.alarm_tests and t.p_value is not None]
    adjusted = adjust_pvalues([tests[i].p_value or 0.0 for i in alarm_indices], cfg.correction)
    final = list(tests)
    for index, p_adjusted in zip(alarm_indices, adjusted, strict=True):
        test = tests[index]
        final[index] = DriftTest(
            **{**asdict(test), "p_adjusted": p_adjusted, "drift": p_adjusted < cfg.alpha},
        )
    return DriftReport(
        num_rows=rows,
        alpha=cfg.alpha,
        correction=cfg.correction,
        tests=final,
        drift_alarm=any(t.drift for t in final),
        performance=performance,
        performance_alarm=performance_alarm,
        window=summary_window,
    )


def _run_tests(reference: dict[str, Any], window: dict[str, Any], cfg: MonitorConfig) -> list[DriftTest]:
    tests: list[DriftTest] = []
    statistic, p = ks_test(np.asarray(reference["token_counts"]["sample"]), window["token_counts"])
    tests.append(
        DriftTest(
            "token_count",
            "data",
            "ks_2samp",
            statistic,
            p,
            detail={
                "reference_mean": reference["token_counts"]["mean"],
                "window_mean": float(np.mean(window["token_counts"])),
            },
        )
    )
    statistic, p = chi2_counts(reference["length_buckets"]["counts"], window["length_buckets"])
    tests.append(
        DriftTest(
            "length_bucket",
            "data",
            "chi2_contingency",
            statistic,
            p,
            detail={
                "edges": reference["length_buckets"]["edges"],
                "reference": reference["length_buckets"]["counts"],
                "window": window["length_buckets"],
            },
        )
    )
    statistic, p = chi2_counts(reference["oov"]["counts"], window["oov_buckets"])
    tests.append(
        DriftTest(
            "oov",
            "data",
            "chi2_contingency on per-text OOV-rate buckets",
            statistic,
            p,
            detail={
                "edges": reference["oov"]["edges"],
                "reference": reference["oov"]["counts"],
                "window": window["oov_buckets"],
                "reference_token_rate": reference["oov"]["token_rate"],
                "window_token_rate": window["oov_token_rate"],
            },
        )
    )
    stored = reference.get("embedding")
    if stored is None or window["embedding"] is None or len(window["embedding"]) < 2:
        reason = "no embeddings in the reference" if stored is None else "no window embeddings"
        tests.append(DriftTest("embedding", "data", "mmd_rbf_permutation", None, None, skipped=reason))
    else:
        mmd2, p, bandwidth = mmd_permutation_test(
            np.asarray(stored["sample"]), window["embedding"], permutations=cfg.permutations, seed=cfg.seed
        )
        tests.append(
            DriftTest(
                "embedding",
                "data",
                "mmd_rbf_permutation",
                mmd2,
                p,
                detail={
                    "embedder": stored["embedder"],
                    "bandwidth": bandwidth,
                    "permutations": cfg.permutations,
                    "reference_rows": len(stored["sample"]),
                    "window_rows": len(window["embedding"]),
                },
            )
        )
    tags = sorted(set(reference["predicted_tags"]) | set(window["predicted_tags"]))
    statistic, p = chi2_counts(
        [reference["predicted_tags"].get(t, 0) for t in tags],
        [window["predicted_tags"].get(t, 0) for t in tags],
    )
    tests.append(
        DriftTest(
            "predicted_tag",
            "prediction",
            "chi2_contingency",
            statistic,
            p,
            detail={
                "reference_share": _share(reference["predicted_tags"]),
                "window_share": _share(window["predicted_tags"]),
            },
        )
    )
    statistic, p = ks_test(np.asarray(reference["confidence"]["sample"]), window["confidences"])
    tests.append(
        DriftTest(
            "confidence",
            "prediction",
            "ks_2samp",
            statistic,
            p,
            detail={
                "reference_mean": reference["confidence"]["mean"],
                "window_mean": float(np.mean(window["confidences"])),
            },
        )
    )
    return tests
