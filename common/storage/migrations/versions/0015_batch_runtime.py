"""model versions: the runtime batch scoring measured faster for each

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 19:00:00.000000

A batch job times each runtime on its first rows and keeps the faster; the outcome
is kept on the version, so later jobs load and use that runtime alone instead of
paying for both and the timing again. NULL: not measured yet.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("batch_runtime", json_type, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("batch_runtime")
