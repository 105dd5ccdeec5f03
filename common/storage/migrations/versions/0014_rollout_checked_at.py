"""rollouts: when the monitor last judged a running rollout

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 11:00:00.000000

An operator (and a test) can tell the monitor's last look from its decision: a
rollout still running was judged at `checked_at` and found undecided.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(
            sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("checked_at")
