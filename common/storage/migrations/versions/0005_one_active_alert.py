"""at most one active alert per rule and subject, enforced by the database

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ACTIVE = sa.text("state IN ('open', 'acknowledged')")


def upgrade() -> None:
    op.create_index(
        "uq_alerts_active", "alerts", ["rule", "subject"], unique=True,
        sqlite_where=ACTIVE, postgresql_where=ACTIVE,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("uq_alerts_active", table_name="alerts")
