"""Feedback → training rows: trust, one vote per key and text, conflicts, known titles, the contract, the
split by time; the review queue; the log's join with keys and reviews."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tagops.data.validate import check_no_leakage, load_projects, validate_frame
from tagops.predlog.feedback import feedback_to_rows, write_training_data
from tagops.predlog.log import PredictionLog
from tagops.predlog.writer import WriterOptions
from tests.unit.conftest import make_projects, write_csv

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    dataset = validate_frame(make_projects(10), file="dataset")
    holdout = validate_frame(make_projects(3, start_id=500, offset=40), file="holdout")
    return dataset, holdout


def labelled(
    title: str,
    tag: str,
    minute: int,
    *,
    description: str = "",
    prediction_id: str | None = None,
    key: str = "lab",
    role: str | None = "labeller",
    revoked: bool = False,
    review: str | None = None,
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
        "key_id": key,
        "key_name": key,
        "key_role": role,
        "key_revoked_at": T0 if revoked else None,
        "review": review,
        "reviewer": "someone" if review else None,
    }


def test_one_vote_per_key_and_text_known_titles_and_invalid_rows_are_dropped() -> None:
    dataset, holdout = frames()
    same = uuid.uuid4().hex
    rows = [
        labelled("Noisiv retupmoc", "computer-vision", 1),
        labelled("noisiv   RETUPMOC!", "computer-vision", 2),  # the same text to match_key: superseded
        labelled("Txet gnissecorp", "natural-language-processing", 3, prediction_id=same),
        labelled("Txet gnissecorp", "mlops", 4, prediction_id=same),  # the key changed its mind: latest wins
        labelled("Rekcod yolped", "mlops", 5, key="a"),
        labelled("Rekcod yolped", "other", 6, key="b"),  # two labellers disagree: a tie, left out
        labelled(str(dataset["title"][0]), "mlops", 7),  # already in dataset.csv
        labelled(str(holdout["title"][0]).upper(), "mlops", 8),  # a holdout title: would leak
        labelled("   ", "mlops", 9, description="only a description"),  # breaks the contract
        labelled("Hparg krowten", "other", 10, key="a"),
        labelled("Hparg krowten", "other", 11, key="b"),  # two keys agree: one row
    ]
    result = feedback_to_rows(rows, dataset, holdout, recent_fraction=0.5)
    counts = result.counts
    assert counts["feedback"] == 11
    assert counts["superseded"] == 2
    assert counts["unresolved"] == 2
    assert counts["agreeing"] == 1
    assert counts["known_titles"] == 2
    assert counts["invalid"] == 1
    kept = pd.concat([result.train, result.recent], ignore_index=True)
    assert sorted(zip(kept["title"], kept["tag"], strict=True)) == [
        ("Hparg krowten", "other"),
        ("Txet gnissecorp", "mlops"),
        ("noisiv   RETUPMOC!", "computer-vision"),
    ]


def test_only_trusted_or_accepted_labels_train_and_a_revoked_keys_leave() -> None:
    dataset, holdout = frames()
    rows = [
        labelled("Wen tcejorp a", "mlops", 1, key="user", role="client"),  # waits for review
        labelled("Wen tcejorp b", "mlops", 2, key="user", role="client", review="accepted"),
        labelled("Wen tcejorp c", "mlops", 3, key="user", role="client", review="rejected"),
        labelled("Wen tcejorp d", "mlops", 4, key="gone", role="labeller", revoked=True),
        labelled("Wen tcejorp e", "mlops", 5, key="gone", role="admin", revoked=True, review="accepted"),
        labelled("Wen tcejorp f", "mlops", 6, key=None, role=None),  # unkeyed: waits
        labelled("Wen tcejorp g", "mlops", 7, key="lab", role="labeller", review="rejected"),
        labelled("Wen tcejorp h", "other", 8, key="boss", role="admin"),
    ]
    result = feedback_to_rows(rows, dataset, holdout, recent_fraction=0.3)
    counts = result.counts
    assert (counts["pending_review"], counts["rejected"], counts["revoked_key"]) == (2, 2, 2)
    kept = pd.concat([result.train, result.recent], ignore_index=True)
    assert sorted(kept["title"]) == ["Wen tcejorp b", "Wen tcejorp h"]


def test_a_thousand_labels_from_one_key_are_one_vote_and_trust_outranks_numbers() -> None:
    dataset, holdout = frames()
    phrase = "Tensorflow object detection"
    noisy = [
        labelled(
            f"{phrase.upper() if i % 2 else phrase}{'  ' * (i % 3)}{'!' * (i % 4)}",
            "natural-language-processing",
            i % 50,
            key="mallory",
            role="client",
            review="accepted",  # even a careless reviewer who accepted them all
        )
        for i in range(1000)
    ]
    honest = labelled(phrase, "computer-vision", 0, key="lab")
    result = feedback_to_rows([*noisy, honest], dataset, holdout, recent_fraction=0.3)
    kept = pd.concat([result.train, result.recent], ignore_index=True)
    assert list(kept["tag"]) == ["computer-vision"]
    assert result.counts["superseded"] == 999 and result.counts["outvoted"] == 1
    # Without the labeller, the thousand are still a single row, not a thousand.
    alone = feedback_to_rows(noisy, dataset, holdout, recent_fraction=0.3)
    assert alone.counts["train"] + alone.counts["recent"] == 1
    # Admin outranks labellers; among equals the majority of keys wins.
    votes = [
        labelled("Sloot gnileba", "mlops", 1, key="l1"),
        labelled("Sloot gnileba", "mlops", 2, key="l2"),
        labelled("Sloot gnileba", "other", 3, key="l3"),
        labelled("Rehtona", "other", 1, key="l1"),
        labelled("Rehtona", "other", 2, key="l2"),
        labelled("Rehtona", "mlops", 3, key="root", role="admin"),
    ]
    decided = feedback_to_rows(votes, dataset, holdout, recent_fraction=0.3)
    kept = pd.concat([decided.train, decided.recent], ignore_index=True)
    assert dict(zip(kept["title"], kept["tag"], strict=True)) == {
        "Sloot gnileba": "mlops",
        "Rehtona": "mlops",
    }
    assert decided.counts["outvoted"] == 3


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


def _logged(store: PredictionLog, titles: list[str]) -> list[str]:
    rows = [
        {
            "id": uuid.uuid4().hex,
            "created_at": T0 + timedelta(seconds=i),
            "request_id": None,
            "model_name": "tagops",
            "model_version": 1,
            "model_uri": "models:/tagops/1",
            "title": title,
            "description": "d",
            "tag": "other",
            "confidence": 0.5,
            "abstained": False,
            "probabilities": {"other": 0.5},
            "latency_ms": 1.0,
            "replica": "r",
        }
        for i, title in enumerate(titles)
    ]
    assert store.writer.submit(rows) and store.writer.flush()
    return [str(r["id"]) for r in rows]


def test_the_review_queue_lists_waiting_labels_and_decisions_let_them_train(tagops_home: Path) -> None:
    from typer.testing import CliRunner

    from tagops.cli import app as cli
    from tagops.predlog.engine import default_database_url
    from tagops.serving.keys import KeyStore
    from tagops.settings import Settings
    from tagops.workloads.feedback_review import ReviewError, decide, review_queue

    store = PredictionLog(default_database_url(Settings()), options=WriterOptions(flush_interval_s=0.05))
    store.create_tables()
    keys = KeyStore(store.engine)
    user, _ = keys.create("user", "client")
    lab, _ = keys.create("lab", "labeller")
    store.writer.start()
    first, second, third = _logged(store, ["Wen tcejorp a", "Wen tcejorp b", "Wen tcejorp c"])
    waiting = [store.add_feedback(prediction_id=first, tag="mlops", key_id=user.key_id) for _ in range(3)]
    other = store.add_feedback(prediction_id=second, tag="mlops", key_id=user.key_id)
    store.add_feedback(prediction_id=third, tag="other", key_id=lab.key_id)
    queue = review_queue(store.reader)
    assert [(i.title, i.proposals, i.proposed_by) for i in queue] == [
        ("Wen tcejorp a", {"mlops": waiting}, {"mlops": ["user"]}),
        ("Wen tcejorp b", {"mlops": [other]}, {"mlops": ["user"]}),
    ]
    with pytest.raises(ReviewError, match="no feedback with id nope"):
        decide(store.engine, [other, "nope"], "accepted")
    runner = CliRunner()
    shown = runner.invoke(cli, ["feedback", "review"])
    assert shown.exit_code == 0, shown.output
    assert "Wen tcejorp a" in shown.stdout and "label guide" in shown.stdout and "mlops:" in shown.stdout
    assert f"user ({user.key_id}): 4" in shown.stdout
    listed = json.loads(runner.invoke(cli, ["feedback", "review", "--json"]).stdout)
    assert listed["waiting"] == 4 and listed["per_key"] == {user.key_id: {"name": "user", "waiting": 4}}
    accepted = runner.invoke(cli, ["feedback", "accept", other, "--reviewer", "ann", "--note", "per guide"])
    assert accepted.exit_code == 0, accepted.output
    rejected = runner.invoke(cli, ["feedback", "reject", "--key", user.key_id])
    assert json.loads(rejected.stdout) == {"decision": "rejected", "feedback": 3}
    assert runner.invoke(cli, ["feedback", "reject", other, "--key", user.key_id]).exit_code != 0
    assert review_queue(store.reader) == []
    found = {r["title"]: (r["review"], r["reviewer"], r["key_role"]) for r in store.reader.read_labelled()}
    assert found["Wen tcejorp b"] == ("accepted", "ann", "client")
    assert found["Wen tcejorp a"][0] == "rejected"
    dataset, holdout = frames()
    rows = feedback_to_rows(store.reader.read_labelled(), dataset, holdout, recent_fraction=0.3)
    assert rows.counts["rejected"] == 3
    kept = pd.concat([rows.train, rows.recent], ignore_index=True)
    assert sorted(kept["title"]) == ["Wen tcejorp b", "Wen tcejorp c"]
    # Revoking the labeller takes its label out of the next training data.
    keys.revoke(lab.key_id)
    rows = feedback_to_rows(store.reader.read_labelled(), dataset, holdout, recent_fraction=0.3)
    kept = pd.concat([rows.train, rows.recent], ignore_index=True)
    assert list(kept["title"]) == ["Wen tcejorp b"] and rows.counts["revoked_key"] == 1
    store.writer.stop()
    store.dispose()
