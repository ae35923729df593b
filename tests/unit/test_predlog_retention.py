"""Retention of the prediction log: age and row limits, labelled rows kept, the writer's pass, the CLI."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tagops.predlog.log import PredictionLog
from tagops.predlog.retention import BATCH_ROWS, RetentionPolicy, measure, prune
from tagops.predlog.schema import predictions, shadow_predictions
from tagops.predlog.writer import LogWriter, WriterOptions
from tests.unit.test_predlog_writer import rows

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def aged(count: int, *, days: float, now: datetime = NOW) -> list[dict[str, Any]]:
    """``count`` prediction rows made ``days`` before ``now`` (one second apart, newest first)."""
    made = rows(count)
    for position, row in enumerate(made):
        row["created_at"] = now - timedelta(days=days, seconds=position)
    return made


def stored(log: PredictionLog, *batches: list[dict[str, Any]]) -> PredictionLog:
    log.create_tables()
    with log.engine.begin() as connection:
        for batch in batches:
            connection.execute(predictions.insert(), batch)
            connection.execute(
                shadow_predictions.insert(),
                [
                    {
                        **{k: v for k, v in row.items() if k not in ("title", "description", "request_id")},
                        "id": uuid.uuid4().hex,
                        "prediction_id": row["id"],
                    }
                    for row in batch
                ],
            )
    return log


def ids(log: PredictionLog) -> set[str]:
    with log.engine.connect() as connection:
        return set(connection.execute(select(predictions.c.id)).scalars())


def shadow_count(log: PredictionLog) -> int:
    with log.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(shadow_predictions)).scalar_one())


def test_the_age_limit_deletes_older_unlabelled_predictions_with_their_shadow_answers() -> None:
    old, young = aged(BATCH_ROWS + 7, days=40), aged(5, days=10)  # more than one delete batch
    log = stored(PredictionLog("sqlite://"), old, young)
    labelled = old[3]["id"]
    log.add_feedback(prediction_id=labelled, tag="mlops", key_id=None)

    result = prune(log.engine, RetentionPolicy(max_age_days=30), now=NOW)

    assert ids(log) == {row["id"] for row in young} | {labelled}
    assert (result.predictions, result.shadow_predictions) == (len(old) - 1, len(old) - 1)
    assert shadow_count(log) == len(young) + 1
    assert prune(log.engine, RetentionPolicy(max_age_days=30), now=NOW).predictions == 0  # idempotent


def test_the_row_limit_keeps_the_newest_and_every_labelled_one() -> None:
    made = aged(20, days=1)  # made[0] is the newest
    log = stored(PredictionLog("sqlite://"), made)
    labelled = made[15]["id"]
    log.add_feedback(prediction_id=labelled, tag="other", key_id=None)

    result = prune(log.engine, RetentionPolicy(max_rows=5), now=NOW)

    assert ids(log) == {row["id"] for row in made[:5]} | {labelled}
    assert result.predictions == 14
    assert prune(log.engine, RetentionPolicy(max_rows=0), now=NOW).predictions == 5
    assert ids(log) == {labelled}


def test_no_limit_deletes_nothing_and_bad_limits_are_refused() -> None:
    log = stored(PredictionLog("sqlite://"), aged(3, days=400))
    assert not RetentionPolicy().active
    assert prune(log.engine, RetentionPolicy(), now=NOW).predictions == 0
    assert len(ids(log)) == 3
    with pytest.raises(ValueError, match="max_age_days must be positive"):
        RetentionPolicy(max_age_days=0)
    with pytest.raises(ValueError, match="max_age_days must be positive, got nan"):
        RetentionPolicy(max_age_days=float("nan"))
    # An age reaching back before the year 1 keeps everything (datetime cannot hold the cutoff).
    for days in (1e6, 1e12, float("inf")):
        assert prune(log.engine, RetentionPolicy(max_age_days=days), now=NOW).predictions == 0
    assert len(ids(log)) == 3
    with pytest.raises(ValueError, match="max_rows must be zero or more"):
        RetentionPolicy(max_rows=-1)


def test_the_prediction_writer_prunes_when_it_starts_and_counts_what_it_deleted(tmp_path: Path) -> None:
    # A database file: an in-memory one is a single connection, which this test's reads, made while the
    # writer's thread prunes, would share (and roll back) with it.
    log = stored(PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}"), aged(4, days=1000))
    counted: list[tuple[str, int]] = []
    options = WriterOptions(retention=RetentionPolicy(max_age_days=30), flush_interval_s=0.01)
    writer = LogWriter(log.engine, options=options, on_rows=lambda outcome, n: counted.append((outcome, n)))
    shadow = LogWriter(log.engine, shadow_predictions, options)
    shadow.start()
    shadow.stop()
    assert len(ids(log)) == 4, "a shadow writer never prunes"
    writer.start()
    deadline = time.monotonic() + 10
    while ids(log) and time.monotonic() < deadline:
        time.sleep(0.02)
    writer.submit(rows(2))
    writer.stop()
    assert len(ids(log)) == 2 and shadow_count(log) == 0
    assert ("pruned", 4) in counted and writer.pruned_rows == 4
    # measured after the start's pass, before the two new rows
    assert writer.size is not None and (writer.size.predictions, writer.size.shadow_predictions) == (0, 0)
    assert writer.size.bytes is not None and writer.size.bytes > 0


def test_measure_counts_both_tables_and_reads_the_database_size(tmp_path: Path) -> None:
    log = stored(PredictionLog(f"sqlite:///{tmp_path / 'predictions.db'}"), aged(30, days=1))
    before = measure(log.engine)
    assert (before.predictions, before.shadow_predictions) == (30, 30)
    assert before.bytes is not None and before.bytes >= 4096
    log.prune(RetentionPolicy(max_rows=10))
    after = measure(log.engine)
    assert (after.predictions, after.shadow_predictions) == (10, 10)
    log.dispose()


def test_a_serving_config_gives_its_writer_the_retention_policy(tmp_path: Path) -> None:
    from tagops.config import ServeConfig
    from tests.unit.serving_fakes import settings_for

    cfg = ServeConfig(log_retention_days=7, log_retention_rows=None)
    with PredictionLog.from_config(cfg, settings_for(tmp_path)) as log:
        assert log.options.retention == RetentionPolicy(max_age_days=7, max_rows=None)
    assert ServeConfig().log_retention_days == 90 and ServeConfig().log_retention_rows == 10_000_000


def test_log_prune_deletes_with_the_given_limits_and_prints_json(
    tagops_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tagops.cli import app
    from tagops.predlog.engine import default_database_url
    from tagops.settings import Settings

    monkeypatch.delenv("TAGOPS_SERVE_DATABASE_URL", raising=False)
    url = default_database_url(Settings())
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    log = stored(PredictionLog(url), aged(6, days=1, now=datetime.now(UTC)))
    log.dispose()

    result = CliRunner().invoke(app, ["log-prune", "--keep-rows", "2"])

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["deleted_predictions"] == 4 and printed["deleted_shadow_predictions"] == 4
    assert printed["max_rows"] == 2 and printed["max_age_days"] == 90
    assert printed["predictions"] == printed["shadow_predictions"] == 2 and printed["bytes"] > 0
    with PredictionLog(url) as reopened:
        assert reopened.reader.count_predictions() == 2
    refused = CliRunner().invoke(app, ["log-prune", "--older-than-days", "0"])
    assert refused.exit_code != 0
