"""Helpers for the unit tests: small synthetic projects data built in memory (no fixtures folder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tagops import LABELS
from tests.conftest import restored_process_state

COLUMNS = ["id", "created_on", "title", "description", "tag"]

#: Words that make each synthetic class learnable; several are among the rules model's seed keywords.
VOCAB: dict[str, tuple[str, ...]] = {
    "computer-vision": ("image", "segmentation", "camera", "pixel", "detection", "video", "yolo", "photo"),
    "mlops": ("deployment", "docker", "kubernetes", "monitoring", "serving", "production", "pipeline", "ci"),
    "natural-language-processing": (
        "text",
        "sentence",
        "language",
        "tokenizer",
        "translation",
        "sentiment",
        "chatbot",
        "summarization",
    ),
    "other": ("reinforcement", "graph", "tabular", "forecasting", "recommender", "agent", "reward", "gnn"),
}


def make_projects(per_label: int = 12, *, start_id: int = 1, offset: int = 0) -> pd.DataFrame:
    """``per_label`` rows for each of the four labels, as strings (like a CSV read with ``dtype=str``)."""
    rows = []
    next_id = start_id
    for label in LABELS:
        words = VOCAB[label]
        for i in range(per_label):
            k = i + offset
            a, b, c = words[k % 8], words[(k + 3) % 8], words[(k + 5) % 8]
            rows.append(
                [
                    str(next_id),
                    f"2021-{1 + k % 12:02d}-{1 + k % 28:02d} 10:{k % 60:02d}:00",
                    f"{a.title()} {b} project {k}",
                    f"An open source {c} and {a} toolkit, release {k}.",
                    label,
                ]
            )
            next_id += 1
    return pd.DataFrame(rows, columns=COLUMNS)


def fit_rules_model(folder: Path) -> Path:
    """A small rules model fitted on :func:`make_projects` rows, saved in ``folder``: a real model in ms."""
    from tagops.config import RulesParams
    from tagops.data.clean import build_text
    from tagops.models.rules import RulesModel

    frame = make_projects(8)
    texts = [build_text(t, d) for t, d in zip(frame.title, frame.description, strict=True)]
    RulesModel(RulesParams(min_term_count=2)).fit(texts, frame.tag.tolist()).save(folder)
    return folder


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` as a CSV file and return its path."""
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def projects() -> pd.DataFrame:
    """48 valid, labelled, string-typed synthetic projects (12 per label)."""
    return make_projects()


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny BERT and its tokenizer, written once for every unit test that needs an encoder."""
    from tests.tiny_encoder import write_tiny_encoder

    return write_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny-bert")


@pytest.fixture
def restore_process_state() -> Iterator[None]:
    """Undo what CLI entry points do to the process (:func:`tests.conftest.restored_process_state`)."""
    with restored_process_state():
        yield
