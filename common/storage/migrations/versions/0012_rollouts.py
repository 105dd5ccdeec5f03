"""rollouts: a challenger beside the champion (shadow, canary, A/B) and its outcome;
prediction log rows say which arm answered and which answer a shadow row scored;
rollups count a shadow's agreement with the champion

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

RUNNING = "state = 'running'"


def upgrade() -> None:
    json_type = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(length=63), nullable=False),
        sa.Column("challenger_version_id", sa.Integer(),
                  sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("champion_version_id", sa.Integer(),
                  sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("share", sa.Float(), nullable=False),
        sa.Column("criteria", json_type, nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("started_by", sa.String(length=100), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("evidence", json_type, nullable=True),
    )  # fmt: skip
    op.create_index("ix_rollouts_model", "rollouts", ["model"])
    op.create_index("uq_rollouts_running", "rollouts", ["model"], unique=True,
                    sqlite_where=sa.text(RUNNING),
                    postgresql_where=sa.text(RUNNING))  # fmt: skip
    with op.batch_alter_table("prediction_logs") as batch:
        batch.add_column(sa.Column("arm", sa.String(length=20), nullable=False,
                                   server_default=""))  # fmt: skip
        batch.add_column(sa.Column("shadow_of", sa.String(length=64), nullable=True))
    with op.batch_alter_table("prediction_rollups") as batch:
        for name, kind in (("compared", sa.Integer()), ("agreed", sa.Integer()),
                           ("difference_sum", sa.Float())):  # fmt: skip
            batch.add_column(sa.Column(name, kind, nullable=False, server_default="0"))
    op.create_index("ix_prediction_logs_shadow_of", "prediction_logs", ["shadow_of"],
                    sqlite_where=sa.text("shadow_of IS NOT NULL"),
                    postgresql_where=sa.text("shadow_of IS NOT NULL"))  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_prediction_logs_shadow_of", table_name="prediction_logs")
    with op.batch_alter_table("prediction_rollups") as batch:
        for name in ("difference_sum", "agreed", "compared"):
            batch.drop_column(name)
    with op.batch_alter_table("prediction_logs") as batch:
        batch.drop_column("shadow_of")
        batch.drop_column("arm")
    op.drop_index("uq_rollouts_running", table_name="rollouts")
    op.drop_index("ix_rollouts_model", table_name="rollouts")
    op.drop_table("rollouts")
