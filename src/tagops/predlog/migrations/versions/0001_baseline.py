"""The schema before migrations existed: predictions, feedback, shadow answers, API keys, serving's tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def _create(name: str, *columns: sa.Column) -> None:  # type: ignore[type-arg]
    """Create the table unless it exists: logs made before migrations already have some of these."""
    if not sa.inspect(op.get_bind()).has_table(name):
        op.create_table(name, *columns)


def upgrade() -> None:
    """Create the baseline tables."""
    _create(
        "predictions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", UTC_TIME, nullable=False, index=True),
        sa.Column("request_id", sa.String(64), nullable=True, index=True),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("model_version", sa.Integer, nullable=True, index=True),
        sa.Column("model_uri", sa.String(1000), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("tag", sa.String(100), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("abstained", sa.Boolean, nullable=False),
        sa.Column("probabilities", sa.JSON, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("replica", sa.String(100), nullable=False),
    )
    _create(
        "feedback",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", UTC_TIME, nullable=False, index=True),
        sa.Column("prediction_id", sa.String(32), nullable=False, index=True),
        sa.Column("tag", sa.String(100), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
    )
    _create(
        "shadow_predictions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("prediction_id", sa.String(32), nullable=False, index=True),
        sa.Column("created_at", UTC_TIME, nullable=False, index=True),
        sa.Column("model_name", sa.String(200), nullable=True),
        sa.Column("model_version", sa.Integer, nullable=True, index=True),
        sa.Column("model_uri", sa.String(1000), nullable=False),
        sa.Column("tag", sa.String(100), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("abstained", sa.Boolean, nullable=False),
        sa.Column("probabilities", sa.JSON, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("replica", sa.String(100), nullable=False),
    )
    _create(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
    )
    _create(
        "serving_model_targets",
        sa.Column("deployment_id", sa.String(64), primary_key=True),
        sa.Column("model_uri", sa.String(1000), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    _create(
        "serving_replicas",
        sa.Column("replica_id", sa.String(64), primary_key=True),
        sa.Column("deployment_id", sa.String(64), nullable=False, index=True),
        sa.Column("model_uri", sa.String(1000), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=True),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop everything (the log's rows with it)."""
    for table in (
        "serving_replicas",
        "serving_model_targets",
        "api_keys",
        "shadow_predictions",
        "feedback",
        "predictions",
    ):
        op.drop_table(table)
