"""The log's schema is made by its migrations: they match the tables the code uses, and they upgrade a log
made before migrations existed without touching its rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, inspect, select

from tagops.predlog import schema
from tagops.predlog.engine import create_log_engine
from tagops.serving import state

pytestmark = pytest.mark.unit


def test_the_migrations_make_exactly_the_tables_the_code_uses(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = create_log_engine(f"sqlite:///{tmp_path / 'log.db'}")
    schema.create_tables(engine)
    assert schema.schema_revision(engine) == "0002"
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, [schema.metadata, state.metadata])
    assert differences == []


def test_a_log_made_before_migrations_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    engine = create_log_engine(f"sqlite:///{tmp_path / 'old.db'}")
    old = MetaData()  # what an earlier release created with create_all: no reviews, rollouts, versions
    for table in (schema.predictions, schema.feedback, schema.shadow_predictions):
        table.to_metadata(old)
    Table("api_keys", old, *(Column(c.name, c.type, primary_key=c.primary_key) for c in schema.api_keys.c))
    Table("serving_model_targets", old, Column("deployment_id", String(64), primary_key=True))
    old.create_all(engine)
    rows = [
        {
            "id": uuid.uuid4().hex,
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
            "request_id": None,
            "model_name": "tagops",
            "model_version": 1,
            "model_uri": "models:/tagops/1",
            "title": f"t{i}",
            "description": "",
            "tag": "mlops",
            "confidence": 0.9,
            "abstained": False,
            "probabilities": {"mlops": 0.9},
            "latency_ms": 1.0,
            "replica": "r",
        }
        for i in range(250)
    ]
    with engine.begin() as connection:
        connection.execute(schema.predictions.insert(), rows)
    before = {table: schema_rows(engine, table) for table in ("predictions",)}
    assert schema.schema_revision(engine) is None
    schema.upgrade(engine)
    assert schema.schema_revision(engine) == "0002"
    tables = set(inspect(engine).get_table_names())
    assert {"feedback_reviews", "serving_rollouts", "serving_replicas", "alembic_version"} <= tables
    assert {table: schema_rows(engine, table) for table in before} == before == {"predictions": 250}
    schema.upgrade(engine)  # again: nothing to do
    assert schema.schema_revision(engine) == "0002"


def schema_rows(engine: object, name: str) -> int:
    table = Table(name, MetaData(), autoload_with=engine)  # type: ignore[arg-type]
    with engine.connect() as connection:  # type: ignore[attr-defined]
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())
