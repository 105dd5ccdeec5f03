"""rows of the request a prediction log row opened (0 for its other rows)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows logged before knew nothing of their request: each counts as one.
    with op.batch_alter_table("prediction_logs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("request_rows", sa.Integer(), nullable=False, server_default="1")
        )


def downgrade() -> None:
    with op.batch_alter_table("prediction_logs", schema=None) as batch_op:
        batch_op.drop_column("request_rows")
