"""drop metric snapshots: the history charts read the per-minute rollups

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 07:00:00.000000

Beat stored a snapshot of each model's window every minute for the history
charts; since 0010 the charts read the rollups, and nothing read the snapshots.
A downgrade brings the table back empty.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON_TYPE = sa.JSON().with_variant(
    postgresql.JSONB(astext_type=sa.Text()), "postgresql"
)
INDEXES = (
    ("ix_metric_snapshots_model", ["model"]),
    ("ix_metric_snapshots_model_version_id", ["model_version_id"]),
    ("ix_metric_snapshots_created_at", ["created_at"]),
)


def upgrade() -> None:
    for index, _ in INDEXES:
        op.drop_index(index, table_name="metric_snapshots")
    op.drop_table("metric_snapshots")


def downgrade() -> None:
    op.create_table(
        "metric_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "model", sa.String(length=63), nullable=False, server_default="default"
        ),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("prediction_count", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("metrics", JSON_TYPE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"], ["model_versions.id"], ondelete="SET NULL"
        ),
    )
    for index, columns in INDEXES:
        op.create_index(index, "metric_snapshots", columns)
