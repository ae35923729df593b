"""Reviews of untrusted feedback, and canary rollouts.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def _create(name: str, *columns: sa.Column) -> None:  # type: ignore[type-arg]
    """Create the table unless it exists: logs made before migrations already have some of these."""
    if not sa.inspect(op.get_bind()).has_table(name):
        op.create_table(name, *columns)


def upgrade() -> None:
    """Add ``feedback_reviews`` and ``serving_rollouts`` (existing rows are untouched)."""
    _create(
        "feedback_reviews",
        sa.Column("feedback_id", sa.String(32), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("reviewed_at", UTC_TIME, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
    )
    _create(
        "serving_rollouts",
        sa.Column("deployment_id", sa.String(64), primary_key=True),
        sa.Column("model_uri", sa.String(1000), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=True),
        sa.Column("champion_uri", sa.String(1000), nullable=False),
        sa.Column("champion_version", sa.Integer, nullable=True),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("ended_at", UTC_TIME, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("champion_answered", sa.Integer, nullable=False),
        sa.Column("champion_failed", sa.Integer, nullable=False),
        sa.Column("canary_answered", sa.Integer, nullable=False),
        sa.Column("canary_failed", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop the two tables."""
    op.drop_table("serving_rollouts")
    op.drop_table("feedback_reviews")
