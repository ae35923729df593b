"""Moving a prediction log to another database: every table copied, verified by count and checksum,
resumable, and a target that disagrees is refused naming the table."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from tagops.predlog.engine import create_log_engine
from tagops.predlog.log import PredictionLog
from tagops.predlog.migrate import MigrationError, migrate_log, table_digest
from tagops.predlog.schema import feedback_reviews, predictions, shadow_predictions
from tagops.predlog.writer import WriterOptions
from tagops.serving.keys import KeyStore
from tagops.workloads.feedback_review import decide

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def filled_log(url: str, rows: int = 1200) -> PredictionLog:
    """A log with predictions, shadow answers, keys, feedback and a review."""
    store = PredictionLog(url, options=WriterOptions(flush_interval_s=0.05))
    store.create_tables()
    store.writer.start()
    batch = [
        {
            "id": uuid.uuid4().hex,
            "created_at": T0 + timedelta(seconds=i, microseconds=i),
            "request_id": f"r{i}",
            "model_name": "tagops",
            "model_version": 1 + i % 2,
            "model_uri": f"models:/tagops/{1 + i % 2}",
            "title": f"Project {i} — naïve ünïcode",
            "description": "d" * (i % 7),
            "tag": "mlops",
            "confidence": 0.1 + (i % 10) / 11,
            "abstained": i % 3 == 0,
            "probabilities": {"mlops": 0.5, "other": 0.25, "computer-vision": 0.125 + i / 1e6},
            "latency_ms": 1.0 / (i + 1),
            "replica": "r",
        }
        for i in range(rows)
    ]
    assert store.writer.submit(batch) and store.writer.flush()
    store.writer.stop()
    with store.engine.begin() as connection:
        connection.execute(
            shadow_predictions.insert(),
            [
                {
                    **{k: v for k, v in row.items() if k not in ("title", "description", "request_id")},
                    "id": uuid.uuid4().hex,
                    "prediction_id": row["id"],
                }
                for row in batch[:100]
            ],
        )
    keys = KeyStore(store.engine)
    user, _ = keys.create("user", "client")
    lab, _ = keys.create("lab", "labeller")
    keys.revoke(user.key_id)
    ids = [store.add_feedback(prediction_id=row["id"], tag="other", key_id=user.key_id) for row in batch[:50]]
    for row in batch[50:80]:
        store.add_feedback(prediction_id=row["id"], tag="mlops", key_id=lab.key_id)
    decide(store.engine, ids[:10], "rejected", reviewer="ann", note="wrong")
    return store


def test_every_table_is_copied_and_verified_and_a_second_run_copies_nothing(tmp_path: Path) -> None:
    source = filled_log(f"sqlite:///{tmp_path / 'source.db'}")
    target = create_log_engine(f"sqlite:///{tmp_path / 'target.db'}")
    summary = migrate_log(source.engine, target, batch_rows=500)
    assert {name: s["rows"] for name, s in summary.items()} == {
        "api_keys": 2,
        "predictions": 1200,
        "feedback": 80,
        "feedback_reviews": 10,
        "shadow_predictions": 100,
    }
    assert all(s["copied"] == s["rows"] and s["already"] == 0 for s in summary.values())
    for table in (predictions, feedback_reviews):
        assert table_digest(source.engine, table) == table_digest(target, table)
    migrated = PredictionLog(f"sqlite:///{tmp_path / 'target.db'}")
    labelled = migrated.reader.read_labelled()
    assert len(labelled) == 80 and sum(1 for r in labelled if r["review"] == "rejected") == 10
    assert sum(1 for r in labelled if r["key_revoked_at"] is not None) == 50  # revocation moved too
    again = migrate_log(source.engine, target)
    assert all(s["copied"] == 0 and s["already"] == s["rows"] for s in again.values())
    source.dispose()
    migrated.dispose()


def test_a_target_that_disagrees_is_refused_naming_the_table(tmp_path: Path) -> None:
    source = filled_log(f"sqlite:///{tmp_path / 'source.db'}", rows=30)
    target = create_log_engine(f"sqlite:///{tmp_path / 'target.db'}")
    migrate_log(source.engine, target)
    with target.begin() as connection:
        connection.execute(update(predictions).where(predictions.c.request_id == "r3").values(tag="other"))
    with pytest.raises(MigrationError, match=r"table predictions: the target holds 30 rows"):
        migrate_log(source.engine, target)
    source.dispose()


def test_the_command_moves_the_configured_log(tagops_home: Path) -> None:
    from typer.testing import CliRunner

    from tagops.cli import app as cli
    from tagops.predlog.engine import default_database_url
    from tagops.settings import Settings

    filled_log(default_database_url(Settings()), rows=40).dispose()
    target = tagops_home / "elsewhere.db"
    result = CliRunner().invoke(cli, ["log-migrate", "--to", f"sqlite:///{target}"])
    assert result.exit_code == 0, result.output
    tables = json.loads(result.stdout)["tables"]
    assert tables["predictions"]["rows"] == 40 and tables["feedback"]["rows"] == 40
    assert tables["predictions"]["copied"] == 40 and target.is_file()
    same = CliRunner().invoke(cli, ["log-migrate", "--to", default_database_url(Settings())])
    assert same.exit_code != 0 and "the target is the source" in same.output
