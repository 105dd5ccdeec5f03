"""per-minute rollups of predictions and labels, read by monitoring instead of the log

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 04:00:00.000000

The rows already logged are rolled up here, so an upgraded deployment keeps its
metrics and charts; every stored label is marked pending, and the label sweep
(beat, and every API write) counts them into their minutes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BACKFILL_CHUNK = 20_000


def upgrade() -> None:
    json_type = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )

    def key() -> list[sa.Column[Any]]:
        return [
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("model", sa.String(length=63), nullable=False),
            sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
            sa.Column("model_version_id", sa.Integer(), nullable=False),
            sa.Column("arm", sa.String(length=20), nullable=False, server_default=""),
        ]

    op.create_table(
        "prediction_rollups",
        *key(),
        sa.Column("writer", sa.String(length=80), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("latency_sum", sa.Float(), nullable=False),
        sa.Column("latency", json_type, nullable=False),
        sa.Column("predicted_values", json_type, nullable=True),
        sa.Column("classes", json_type, nullable=True),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.Column("confidence_count", sa.Integer(), nullable=False),
        sa.Column("quality", json_type, nullable=True),
        sa.UniqueConstraint("model", "minute", "model_version_id", "arm", "writer",
                            name="uq_prediction_rollups_key"),
    )  # fmt: skip
    op.create_table(
        "label_rollups",
        *key(),
        sa.Column("predicted", sa.Text(), nullable=False),
        sa.Column("actual", sa.Text(), nullable=False),
        sa.Column("labelled", sa.Integer(), nullable=False),
        sa.Column("abs_error_sum", sa.Float(), nullable=False),
        sa.Column("sq_error_sum", sa.Float(), nullable=False),
        sa.Column("label_sum", sa.Float(), nullable=False),
        sa.Column("label_sq_sum", sa.Float(), nullable=False),
        sa.UniqueConstraint("model", "minute", "model_version_id", "arm", "predicted",
                            "actual", name="uq_label_rollups_key"),
    )  # fmt: skip
    op.add_column("feedback_labels", sa.Column("counted_label", sa.Text()))
    op.add_column("feedback_labels", sa.Column(
        "pending", sa.Boolean(), nullable=False, server_default=sa.true()
    ))  # fmt: skip
    op.create_index(
        "ix_feedback_labels_pending", "feedback_labels", ["prediction_id"],
        sqlite_where=sa.text("pending"), postgresql_where=sa.text("pending"),
    )  # fmt: skip
    op.create_index("ix_prediction_logs_version_newest", "prediction_logs",
                    ["model_version_id", "id"])  # fmt: skip
    op.drop_index("ix_prediction_logs_model_version_id", table_name="prediction_logs")
    _backfill_prediction_rollups()


ROLLUP_COLUMNS = (
    "requests", "errors", "predictions", "latency_sum", "latency", "predicted_values",
    "classes", "confidence_sum", "confidence_count", "quality",
)  # fmt: skip


def _backfill_prediction_rollups() -> None:
    """Roll up the rows already logged, a chunk at a time, as one writer. Counting
    is today's (common.monitoring.rollups); writing is this revision's own, so later
    rollup columns do not break an upgrade that passes through here."""
    from common.monitoring.rollups import MinuteCounts, minute_of

    logs = sa.table(
        "prediction_logs",
        *[sa.column(name) for name in ("id", "model", "model_version_id", "prediction",
                                       "confidence", "latency_ms", "status_code",
                                       "request_rows")],
        sa.column("data_quality", sa.JSON()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )  # fmt: skip
    json_type = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )
    rollups = sa.table(
        "prediction_rollups",
        *[sa.column(name) for name in ("model", "minute", "model_version_id", "arm",
                                       "writer", "requests", "errors", "predictions",
                                       "latency_sum", "confidence_sum",
                                       "confidence_count")],
        *[sa.column(name, json_type) for name in ("latency", "predicted_values",
                                                  "classes", "quality")],
    )  # fmt: skip
    connection = op.get_bind()
    tasks: dict[str, str] = {
        name: task
        for name, task in connection.execute(sa.text("SELECT name, task FROM models"))
    }
    states: dict[tuple[Any, ...], MinuteCounts] = {}
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(logs).where(logs.c.id > last_id).order_by(logs.c.id)
            .limit(BACKFILL_CHUNK)
        ).mappings().all()  # fmt: skip
        if not rows:
            break
        for row in rows:
            key = (row["model"], minute_of(row["created_at"]),
                   int(row["model_version_id"] or 0))  # fmt: skip
            state = states.setdefault(key, MinuteCounts())
            state.add_rows([dict(row)], tasks.get(row["model"], "classification"))
        last_id = rows[-1]["id"]
    values = [
        {"model": key[0], "minute": key[1], "model_version_id": key[2], "arm": "",
         "writer": "migration-0010",
         **{name: state.columns()[name] for name in ROLLUP_COLUMNS}}
        for key, state in states.items()
    ]  # fmt: skip
    for start in range(0, len(values), BACKFILL_CHUNK):
        connection.execute(rollups.insert(), values[start : start + BACKFILL_CHUNK])


def downgrade() -> None:
    op.create_index("ix_prediction_logs_model_version_id", "prediction_logs",
                    ["model_version_id"])  # fmt: skip
    op.drop_index("ix_prediction_logs_version_newest", table_name="prediction_logs")
    op.drop_index("ix_feedback_labels_pending", table_name="feedback_labels")
    with op.batch_alter_table("feedback_labels") as batch:
        batch.drop_column("pending")
        batch.drop_column("counted_label")
    op.drop_table("label_rollups")
    op.drop_table("prediction_rollups")
