"""Feedback → training rows: join, conflicts, duplicates, known titles, the contract, the split by time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tagops.data.validate import check_no_leakage, load_projects, validate_frame
from tagops.predlog.log import PredictionLog
from tagops.predlog.writer import WriterOptions
from tagops.workloads.feedback import feedback_to_rows, write_training_data
from tests.unit.conftest import make_projects, write_csv

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    dataset = validate_frame(make_projects(10), file="dataset")
    holdout = validate_frame(make_projects(3, start_id=500, offset=40), file="holdout")
    return dataset, holdout


def labelled(
    title: str, tag: str, minute: int, *, description: str = "", prediction_id: str | None = None
) -> dict[str, Any]:
    return {
        "feedback_id": uuid.uuid4().hex,
        "feedback_at": T0 + timedelta(minutes=minute),
        "feedback_tag": tag,
        "prediction_id": prediction_id or uuid.uuid4().hex,
        "predicted_at": T0,
        "title": title,
        "description": description,
        "tag": "other",
        "model_version": 1,
    }


def test_conflicts_duplicates_known_titles_and_invalid_rows_are_dropped() -> None:
    dataset, holdout = frames()
    same = uuid.uuid4().hex
    rows = [
        labelled("Noisiv retupmoc", "computer-vision", 1),
        labelled("noisiv RETUPMOC ", "computer-vision", 2),  # the same text again: kept once
        labelled("Txet gnissecorp", "natural-language-processing", 3, prediction_id=same),
        labelled("Txet gnissecorp", "mlops", 4, prediction_id=same),  # the same prediction, another label
        labelled("Rekcod yolped", "mlops", 5),
        labelled("Rekcod yolped", "other", 6),  # the same text labelled differently: a conflict
        labelled(str(dataset["title"][0]), "mlops", 7),  # already in dataset.csv
        labelled(str(holdout["title"][0]).upper(), "mlops", 8),  # a holdout title: would leak
        labelled("   ", "mlops", 9, description="only a description"),  # breaks the contract
        labelled("Hparg krowten", "other", 10),
        labelled("Hparg krowten", "other", 11),  # the same text and label on another prediction
    ]
    result = feedback_to_rows(rows, dataset, holdout, recent_fraction=0.5)
    counts = result.counts
    assert counts["feedback"] == 11
    assert counts["conflicting_predictions"] == 1
    assert counts["conflicting_texts"] == 2
    assert counts["duplicate_texts"] == 2
    assert counts["known_titles"] == 2
    assert counts["invalid"] == 1
    kept = pd.concat([result.train, result.recent], ignore_index=True)
    assert sorted(kept["tag"]) == ["computer-vision", "other"]
    assert counts["train"] + counts["recent"] == 2


def test_rows_pass_the_contract_with_fresh_ids_and_split_by_feedback_time() -> None:
    dataset, holdout = frames()
    rows = [labelled(f"Wen tcejorp {i}", "computer-vision" if i % 2 else "mlops", 20 - i) for i in range(10)]
    result = feedback_to_rows(rows, dataset, holdout, recent_fraction=0.3)
    assert len(result.train) == 7 and len(result.recent) == 3
    # the newest feedback is the recent window, none of it is trained on
    assert result.train["created_on"].max() <= result.recent["created_on"].min()
    assert set(result.recent["title"]) == {"Wen tcejorp 0", "Wen tcejorp 1", "Wen tcejorp 2"}
    ids = pd.concat([result.train["id"], result.recent["id"]])
    assert ids.is_unique and ids.min() > max(dataset["id"].max(), holdout["id"].max())
    validate_frame(result.train.astype(str), file="train")


def test_no_feedback_gives_no_rows() -> None:
    dataset, holdout = frames()
    result = feedback_to_rows([], dataset, holdout, recent_fraction=0.3)
    assert result.train.empty and result.recent.empty and result.counts["feedback"] == 0


def test_training_data_is_the_dataset_plus_feedback_and_does_not_leak(tmp_path: Path) -> None:
    dataset, holdout = frames()
    holdout_path = write_csv(tmp_path / "holdout.csv", make_projects(3, start_id=500, offset=40))
    rows = [labelled(f"Wen tcejorp {i}", "mlops", i) for i in range(6)]
    result = feedback_to_rows(rows, dataset, holdout, recent_fraction=0.5)
    snap = write_training_data(dataset, result.train, holdout_path, tmp_path / "retrain")
    combined = load_projects(snap.dataset_path)
    assert len(combined) == len(dataset) + 3
    check_no_leakage(combined, load_projects(holdout_path), file="combined", other_file="holdout")
    assert snap.holdout_path == holdout_path and len(snap.dataset_sha256) == 64


def test_the_log_joins_feedback_with_the_prediction_it_labels(tmp_path: Path) -> None:
    store = PredictionLog(f"sqlite:///{tmp_path / 'log.db'}", options=WriterOptions(flush_interval_s=0.05))
    store.writer.start()
    rows = [
        {
            "id": f"{i:032x}",
            "created_at": T0 + timedelta(seconds=i),
            "request_id": None,
            "model_name": "tagops",
            "model_version": 1,
            "model_uri": "models:/tagops/1",
            "title": f"title {i}",
            "description": "d",
            "tag": "other",
            "confidence": 0.5,
            "abstained": False,
            "probabilities": {"other": 0.5},
            "latency_ms": 1.0,
            "replica": "r",
        }
        for i in range(3)
    ]
    assert store.writer.submit(rows) and store.writer.flush()
    store.add_feedback(prediction_id=rows[2]["id"], tag="mlops", key_id=None)
    store.add_feedback(prediction_id=rows[0]["id"], tag="computer-vision", key_id=None)
    found = store.reader.read_labelled()
    store.writer.stop()
    store.dispose()
    assert [(r["title"], r["feedback_tag"]) for r in found] == [
        ("title 2", "mlops"),
        ("title 0", "computer-vision"),
    ]
    assert found[0]["feedback_at"].tzinfo is not None and found[0]["model_version"] == 1


def test_retrains_started_in_the_same_second_write_folders_of_their_own(tmp_path: Path) -> None:
    import stat

    from tagops.data.stages import snapshot
    from tagops.settings import Settings
    from tagops.workloads.retrain import training_data_stage

    dataset, holdout = frames()
    dataset_path = write_csv(tmp_path / "dataset.csv", make_projects(10))
    holdout_path = write_csv(tmp_path / "holdout.csv", make_projects(3, start_id=500, offset=40))
    original = snapshot(dataset_path, holdout_path)
    settings = Settings(home=tmp_path / "home")
    rows = feedback_to_rows(
        [labelled(f"Wen tcejorp {i}", "mlops", i) for i in range(6)], dataset, holdout, recent_fraction=0.5
    )
    first, second = (
        training_data_stage(settings, original, dataset, rows.train, rows.recent) for _ in range(2)
    )
    assert first.dataset_path.parent != second.dataset_path.parent
    assert first.dataset_path.parent.parent == settings.home / "retrain"
    assert stat.S_IMODE(first.dataset_path.parent.stat().st_mode) == 0o700  # it holds user text
    assert first.dataset_sha256 == second.dataset_sha256
