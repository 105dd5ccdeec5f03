"""compiled models: each version's ONNX artifact (where its conversion matched
scikit-learn) or the reason scikit-learn serves it

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 10:00:00.000000

Versions from before have no runtime yet (NULL): the first process that loads one
compiles it and records the outcome.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

COLUMNS = ("runtime", "runtime_reason", "compile_check", "onnx_path",
           "onnx_sha256", "onnx_size_bytes")  # fmt: skip


def upgrade() -> None:
    json_type = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("runtime", sa.String(length=10), nullable=True))
        batch.add_column(sa.Column("runtime_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("compile_check", json_type, nullable=True))
        batch.add_column(sa.Column("onnx_path", sa.Text(), nullable=True))
        batch.add_column(sa.Column("onnx_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("onnx_size_bytes", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
