"""Reference statistics and drift tests on synthetic traffic (fast: hashing embedder, no torch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tagops import LABELS
from tagops.config import MonitorConfig, ReferenceConfig
from tagops.monitoring.drift import adjust_pvalues, chi2_counts, detect_drift, mmd_permutation_test
from tagops.monitoring.reference import (
    HashingEmbedder,
    bucket_counts,
    build_vocabulary,
    create_embedder,
    oov_counts,
    reference_stats,
    token_counts,
    window_stats,
)
from tests.unit.conftest import VOCAB

pytestmark = pytest.mark.unit

FILLER = ("open", "source", "library", "model", "fast", "simple", "python", "framework", "toolkit", "data")
NEW_WORDS = (
    "qubit",
    "photonic",
    "lidar",
    "genome",
    "protein",
    "seismic",
    "crypto",
    "ledger",
    "quantum",
    "ion",
)


def traffic(
    n: int, rng: np.random.Generator, *, mix: list[float] | None = None, words: tuple[int, int] = (6, 30)
) -> tuple[list[str], list[str], list[float]]:
    """Synthetic (text, predicted tag, confidence) rows: class words plus filler, lengths in ``words``."""
    labels = list(LABELS)
    texts, tags, conf = [], [], []
    for _ in range(n):
        label = labels[rng.choice(4, p=mix or [0.25] * 4)]
        length = int(rng.integers(*words))
        pool = VOCAB[label] + FILLER
        texts.append(" ".join(rng.choice(pool, size=length)))
        tags.append(label)
        conf.append(float(rng.beta(8, 2)))
    return texts, tags, conf


@pytest.fixture(scope="module")
def reference() -> dict[str, object]:
    rng = np.random.default_rng(1)
    texts, tags, conf = traffic(400, rng)
    vocabulary_texts, _, _ = traffic(400, rng)
    return reference_stats(
        texts,
        tags,
        conf,
        tags,
        HashingEmbedder(),
        vocabulary_texts=vocabulary_texts,
        cfg=ReferenceConfig(embedding_sample=256),
        holdout_f1=0.9,
    )


CFG = MonitorConfig(permutations=1000, min_window_rows=50)


def run(reference: dict[str, object], texts: list[str], tags: list[str], conf: list[float], **kw: object):  # type: ignore[no-untyped-def]
    window = window_stats(texts, tags, conf, reference, embedder=HashingEmbedder(), **kw)  # type: ignore[arg-type]
    return detect_drift(reference, window, CFG)


def test_reference_is_json_ready_and_complete(reference: dict[str, object]) -> None:
    decoded = json.loads(json.dumps(reference))
    assert decoded["num_rows"] == 400
    assert len(decoded["embedding"]["sample"]) == 256
    assert decoded["embedding"]["embedder"] == "hashing-64"
    assert sum(decoded["length_buckets"]["counts"]) == 400
    assert sum(decoded["oov"]["counts"]) == 400
    assert sum(decoded["predicted_tags"].values()) == 400
    assert decoded["labels"] == decoded["predicted_tags"]
    assert 0.0 <= decoded["oov"]["token_rate"] < 0.01  # same word pool as the vocabulary


def test_text_features() -> None:
    assert token_counts(["Hello, world! https://x.org/a", ""]).tolist() == [2, 0]
    assert bucket_counts([1, 8, 9, 200], [8, 16]) == [2, 1, 1]
    vocabulary = frozenset(build_vocabulary(["Image segmentation", "text"]))
    unknown, total = oov_counts(["image qubit qubit", ""], vocabulary)
    assert unknown.tolist() == [2, 0] and total.tolist() == [3, 0]


def test_reference_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="confidences has 1 values for 2 texts"):
        reference_stats(["a", "b"], ["mlops", "mlops"], [0.5], None)
    with pytest.raises(ValueError, match="probabilities"):
        reference_stats(["a"], ["mlops"], [1.5], None)
    with pytest.raises(ValueError, match="at least one text"):
        reference_stats([], [], [], None)
    with pytest.raises(ValueError, match="unknown embedder"):
        create_embedder("word2vec")
    with pytest.raises(ValueError, match="strictly increasing"):
        ReferenceConfig(length_edges=(8, 8))
    with pytest.raises(ValueError, match="missing"):
        window_stats(["a"], ["mlops"], [0.5], {"schema_version": 1})


def test_holm_and_bonferroni() -> None:
    p = [0.01, 0.04, 0.03, 0.5]
    assert adjust_pvalues(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 1.0])
    # Holm: sorted 0.01*4, 0.03*3, 0.04*2, 0.5*1, made monotone
    assert adjust_pvalues(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.5])
    with pytest.raises(ValueError, match="unknown correction"):
        adjust_pvalues(p, "fdr")


def test_chi2_degenerate_tables_give_no_evidence() -> None:
    assert chi2_counts([5, 0], [7, 0]) == (0.0, 1.0)
    assert chi2_counts([50, 50], [90, 10])[1] < 1e-6


def test_mmd_separates_shifted_gaussians_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 8))
    _, p_same, _ = mmd_permutation_test(x, rng.standard_normal((100, 8)), permutations=500, seed=1)
    _, p_shift, _ = mmd_permutation_test(x, rng.standard_normal((100, 8)) + 0.5, permutations=500, seed=1)
    assert p_same > 0.05
    assert p_shift == pytest.approx(1 / 501)
    with pytest.raises(ValueError, match="equal widths"):
        mmd_permutation_test(x, rng.standard_normal((10, 3)))


def test_in_distribution_windows_rarely_alarm(reference: dict[str, object]) -> None:
    rng = np.random.default_rng(7)
    alarms = sum(run(reference, *traffic(150, rng)).drift_alarm for _ in range(20))
    assert alarms <= 1


@pytest.mark.parametrize(
    ("shift", "expected"),
    [
        ("length", "token_count"),
        ("vocabulary", "oov"),
        ("mix", "predicted_tag"),
    ],
)
def test_shifted_window_alarms(reference: dict[str, object], shift: str, expected: str) -> None:
    rng = np.random.default_rng(3)
    if shift == "length":
        texts, tags, conf = traffic(150, rng, words=(40, 80))
    elif shift == "mix":
        texts, tags, conf = traffic(150, rng, mix=[0.85, 0.05, 0.05, 0.05])
    else:
        texts, tags, conf = traffic(150, rng)
        texts = [f"{t} {' '.join(rng.choice(NEW_WORDS, size=4))}" for t in texts]
    report = run(reference, texts, tags, conf)
    assert report.drift_alarm
    assert expected in report.drifted()
    assert min(t.p_adjusted for t in report.tests if t.p_adjusted is not None) < 0.01


def test_small_window_is_skipped_not_alarmed(reference: dict[str, object]) -> None:
    rng = np.random.default_rng(4)
    texts, tags, conf = traffic(20, rng, words=(60, 90))
    report = run(reference, texts, tags, conf)
    assert report.skipped and "min_window_rows=50" in report.skipped
    assert not report.drift_alarm and report.tests == []


def test_performance_alarm_needs_enough_feedback_and_a_real_drop(reference: dict[str, object]) -> None:
    rng = np.random.default_rng(5)
    texts, tags, conf = traffic(150, rng)
    right = [(t, t) for t in tags[:100]]
    wrong = [(t, LABELS[(LABELS.index(t) + 1) % 4]) for t in tags[:100]]
    assert not run(reference, texts, tags, conf, feedback=right).performance_alarm
    report = run(reference, texts, tags, conf, feedback=wrong)
    assert report.performance_alarm and report.performance is not None
    assert report.performance["f1"] == 0.0 and report.performance["holdout_f1"] == 0.9
    few = run(reference, texts, tags, conf, feedback=wrong[:10])
    assert (
        not few.performance_alarm
        and few.performance is not None
        and "fewer than 50" in few.performance["skipped"]
    )


def test_embedder_must_match_reference(reference: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="embedded with 'hashing-64'"):
        window_stats(["a b"], ["mlops"], [0.5], reference, embedder=HashingEmbedder(dims=32))  # type: ignore[arg-type]
