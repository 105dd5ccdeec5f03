"""Queries. Callers own the transaction; nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from common.storage.log_insert import (
    PreparedLogRows,
    insert_log_rows,
    insert_prepared_rows,
)
from common.storage.tables import (
    AuditEvent,
    Champion,
    ChampionHistory,
    FeedbackLabel,
    ModelVersion,
    PredictionLog,
)


def find_model_version(
    session: Session, name: str, version: int
) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion).where(
            ModelVersion.name == name, ModelVersion.version == version
        )
    )


def find_model_version_by_job(session: Session, job_id: int) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.job_id == job_id))


def list_model_versions(session: Session, name: str) -> Sequence[ModelVersion]:
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.name == name)
        .order_by(ModelVersion.version.desc())
    ).all()


def next_version_number(session: Session, name: str) -> int:
    latest = session.scalar(
        select(func.max(ModelVersion.version)).where(ModelVersion.name == name)
    )
    return (latest or 0) + 1


def find_champion(
    session: Session, name: str, *, for_update: bool = False
) -> Champion | None:
    query = select(Champion).where(Champion.name == name)
    if for_update:
        query = query.with_for_update(of=Champion)
    return session.scalar(query)


def find_champion_generation(session: Session, name: str) -> tuple[int, int] | None:
    """(generation, model_version_id) of the champion: what API processes poll."""
    row = session.execute(
        select(Champion.generation, Champion.model_version_id).where(
            Champion.name == name
        )
    ).first()
    return (row[0], row[1]) if row else None


def insert_prediction_logs(session: Session, rows: list[dict[str, Any]]) -> None:
    """Bulk-insert prediction log rows straight through the driver (log_insert)."""
    insert_log_rows(session, rows)


def insert_prepared_prediction_logs(session: Session, rows: PreparedLogRows) -> None:
    """Insert log rows made ready for the driver beforehand (log_insert)."""
    insert_prepared_rows(session, rows)


def find_prediction_targets(
    session: Session, prediction_ids: list[str]
) -> dict[str, tuple[str, list[Any]]]:
    """Task and classes of the model version that answered each known prediction."""
    rows = session.execute(
        select(PredictionLog.prediction_id, ModelVersion.task, ModelVersion.classes)
        .join(ModelVersion, ModelVersion.id == PredictionLog.model_version_id)
        .where(PredictionLog.prediction_id.in_(prediction_ids))
    ).all()
    return {prediction_id: (task, classes) for prediction_id, task, classes in rows}


def find_feedback(
    session: Session, prediction_ids: list[str]
) -> dict[str, FeedbackLabel]:
    rows = session.scalars(
        select(FeedbackLabel).where(FeedbackLabel.prediction_id.in_(prediction_ids))
    ).all()
    return {row.prediction_id: row for row in rows}


def champion_stack(session: Session, name: str) -> Sequence[ChampionHistory]:
    """Champions not rolled back, newest first."""
    return session.scalars(
        select(ChampionHistory)
        .where(ChampionHistory.name == name, ChampionHistory.popped_at.is_(None))
        .order_by(ChampionHistory.id.desc())
    ).all()


def add_audit_event(
    session: Session,
    action: str,
    subject_type: str,
    subject_id: object,
    *,
    actor: str = "system",
    model: str | None = None,
    **details: Any,
) -> AuditEvent:
    event = AuditEvent(
        action=action,
        model=model,
        actor=actor,
        subject_type=subject_type,
        subject_id=str(subject_id),
        details=details,
    )
    session.add(event)
    return event


def list_audit_events(
    session: Session,
    subject_type: str | None = None,
    limit: int = 100,
    model: str | None = None,
) -> Sequence[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if subject_type:
        query = query.where(AuditEvent.subject_type == subject_type)
    if model:
        query = query.where(AuditEvent.model == model)
    return session.scalars(query).all()


def labelled_since(model: str, since: datetime, *columns: Any) -> Select[Any]:
    """`columns` of `model`'s answered predictions logged since `since` that have a
    label."""
    return (
        select(*columns)
        .select_from(PredictionLog)
        .join(FeedbackLabel, FeedbackLabel.prediction_id == PredictionLog.prediction_id)
        .where(PredictionLog.model == model, PredictionLog.created_at >= since,
               PredictionLog.status_code == 200)
    )  # fmt: skip


def count_labelled_since(session: Session, model: str, since: datetime) -> int:
    """How many of `model`'s answered predictions since `since` have a label."""
    return session.scalar(labelled_since(model, since, func.count())) or 0
