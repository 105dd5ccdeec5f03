"""named models: a models table, and the model's name on every row that belongs to one

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:40:00.000000

An existing deployment served one model (named by the old MODELOPS_MODEL_NAME,
`default` unless set). Its versions give the `models` rows; rows tied to a version take
that version's name, the rest (no version recorded) take `default`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

ACTIVE = sa.text("state IN ('open', 'acknowledged')")
# Tables whose rows belong to a model, and whether a row may belong to none (jobs,
# alerts and audit events may be about the whole deployment).
OWNED = (
    ("prediction_logs", False),
    ("metric_snapshots", False),
    ("drift_reports", False),
    ("jobs", True),
    ("alerts", True),
    ("audit_events", True),
)


def upgrade() -> None:
    json_type = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )
    op.create_table(
        "models",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("task", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("source", json_type, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute(
        "INSERT INTO models (name, task, source, created_at) "
        "SELECT name, 'classification', '{}', MIN(created_at) FROM model_versions "
        "GROUP BY name"
    )
    op.add_column("model_versions", sa.Column(
        "task", sa.String(length=20), nullable=False, server_default="classification"
    ))  # fmt: skip
    op.add_column("model_versions", sa.Column("provenance", json_type, nullable=True))
    for table, nullable in OWNED:
        op.add_column(table, sa.Column(
            "model", sa.String(length=63), nullable=nullable,
            server_default=None if nullable else "default",
        ))  # fmt: skip
    for table in ("prediction_logs", "metric_snapshots", "drift_reports"):
        op.execute(
            f"UPDATE {table} SET model = (SELECT name FROM model_versions "
            f"WHERE model_versions.id = {table}.model_version_id) "
            "WHERE model_version_id IS NOT NULL"
        )
    op.execute("UPDATE jobs SET model = 'default' WHERE kind = 'retrain'")
    op.execute("UPDATE jobs SET active_key = 'retrain:default' "
               "WHERE active_key = 'retrain'")  # fmt: skip
    op.execute("UPDATE alerts SET model = 'default'")
    op.create_index("ix_prediction_logs_model_created_at", "prediction_logs",
                    ["model", "created_at"])  # fmt: skip
    op.create_index("ix_metric_snapshots_model", "metric_snapshots", ["model"])
    op.create_index("ix_drift_reports_model", "drift_reports", ["model"])
    op.create_index("ix_jobs_model", "jobs", ["model"])
    op.create_index("ix_alerts_model", "alerts", ["model"])
    op.create_index("ix_audit_events_model", "audit_events", ["model"])
    op.drop_index("uq_alerts_active", table_name="alerts")
    op.create_index(
        "uq_alerts_active", "alerts", ["model", "rule", "subject"], unique=True,
        sqlite_where=ACTIVE, postgresql_where=ACTIVE,
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("uq_alerts_active", table_name="alerts")
    op.create_index(
        "uq_alerts_active", "alerts", ["rule", "subject"], unique=True,
        sqlite_where=ACTIVE, postgresql_where=ACTIVE,
    )  # fmt: skip
    for index, table in (
        ("ix_prediction_logs_model_created_at", "prediction_logs"),
        ("ix_metric_snapshots_model", "metric_snapshots"),
        ("ix_drift_reports_model", "drift_reports"),
        ("ix_jobs_model", "jobs"),
        ("ix_alerts_model", "alerts"),
        ("ix_audit_events_model", "audit_events"),
    ):
        op.drop_index(index, table_name=table)
    op.execute("UPDATE jobs SET active_key = 'retrain' "
               "WHERE active_key LIKE 'retrain:%'")  # fmt: skip
    for table, _nullable in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("model")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("provenance")
        batch.drop_column("task")
    op.drop_table("models")
