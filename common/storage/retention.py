"""Retention: delete what has aged out, in small transactions, so storage stays
bounded for months and the prediction log writer is never held up for long.

Each table is pruned oldest first, `prune_batch_rows` rows per transaction, and a
run stops after `PRUNE_BUDGET_SECONDS` (the next run goes on). Raw prediction rows go
after `prediction_retention_days`, but a labelled one stays while a retrain may use
it (`retrain_feedback_days`, the longest of any model); their labels go with them,
counted into the rollups first if they were not yet. On SQLite the freed pages are
handed back with `PRAGMA incremental_vacuum`; PostgreSQL's autovacuum reuses them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, exists, not_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.monitoring.label_rollups import count_labels
from common.storage.db import session_scope
from common.storage.tables import (
    Alert,
    DriftReport,
    FeedbackLabel,
    Job,
    LabelRollup,
    ModelVersion,
    PredictionLog,
    PredictionRollup,
)

log = logging.getLogger(__name__)

PRUNE_BUDGET_SECONDS = 20.0
VACUUM_PAGES = 2000  # pages handed back per batch on SQLite (4 KiB each)
FINISHED = ("succeeded", "failed", "cancelled")


def cutoffs(settings: Settings, now: datetime) -> dict[str, datetime]:
    """Rows older than these go, per kind."""

    def days(value: float) -> datetime:
        return now - timedelta(days=value)

    feedback_days = max(
        [settings.retrain_feedback_days]
        + [settings.for_model(name).retrain_feedback_days for name in settings.models]
    )
    return {
        "prediction_logs": days(settings.prediction_retention_days),
        "labelled_prediction_logs": days(
            max(settings.prediction_retention_days, feedback_days)
        ),
        "rollups": days(settings.rollup_retention_days),
        "drift_reports": days(settings.drift_report_retention_days),
        "jobs": days(settings.job_retention_days),
        "alerts": days(settings.alert_retention_days),
    }


def prune(
    factory: sessionmaker[Session],
    settings: Settings,
    now: datetime,
    budget_seconds: float = PRUNE_BUDGET_SECONDS,
) -> dict[str, int]:
    """Delete what aged out, batch by batch; returns rows deleted per table."""
    limit = cutoffs(settings, now)
    batch = settings.prune_batch_rows
    labelled = exists().where(
        FeedbackLabel.prediction_id == PredictionLog.prediction_id
    )
    old_logs = and_(
        PredictionLog.created_at < limit["prediction_logs"],
        or_(not_(labelled),
            PredictionLog.created_at < limit["labelled_prediction_logs"]),
    )  # fmt: skip
    in_use = select(ModelVersion.job_id).where(ModelVersion.job_id.is_not(None))
    plan: list[tuple[str, Any, Any, Callable[[Session, list[Any]], None] | None]] = [
        ("prediction_logs", PredictionLog, old_logs, _drop_labels_of),
        ("prediction_rollups", PredictionRollup,
         PredictionRollup.minute < limit["rollups"], None),
        ("label_rollups", LabelRollup, LabelRollup.minute < limit["rollups"], None),
        ("feedback_labels", FeedbackLabel, and_(
            FeedbackLabel.created_at < limit["labelled_prediction_logs"],
            not_(exists().where(
                PredictionLog.prediction_id == FeedbackLabel.prediction_id)),
        ), None),  # labels of predictions never logged
        ("drift_reports", DriftReport,
         DriftReport.created_at < limit["drift_reports"], None),
        ("jobs", Job, and_(Job.state.in_(FINISHED), Job.finished_at < limit["jobs"],
                           Job.id.not_in(in_use)), None),
        ("alerts", Alert, and_(Alert.state == "resolved",
                               Alert.resolved_at < limit["alerts"]), None),
    ]  # fmt: skip
    deleted = dict.fromkeys([name for name, *_ in plan], 0)
    deadline = time.monotonic() + budget_seconds
    for name, table, condition, before in plan:
        while time.monotonic() < deadline:
            with session_scope(factory) as session:
                ids = list(session.scalars(
                    select(table.id).where(condition).order_by(table.id).limit(batch)
                ))  # fmt: skip
                if not ids:
                    break
                if before is not None:
                    before(session, ids)
                session.execute(delete(table).where(table.id.in_(ids)))
            deleted[name] += len(ids)
            _hand_back_space(factory)
            if len(ids) < batch:
                break
    if any(deleted.values()):
        log.info("pruned %s", {k: v for k, v in deleted.items() if v})
    return deleted


def _drop_labels_of(session: Session, log_ids: list[int]) -> None:
    """Count the labels of these rows if nobody has yet, then delete them."""
    prediction_ids = list(
        session.scalars(
            select(PredictionLog.prediction_id).where(PredictionLog.id.in_(log_ids))
        )
    )
    count_labels(session, prediction_ids)
    session.execute(
        delete(FeedbackLabel).where(FeedbackLabel.prediction_id.in_(prediction_ids))
    )


def _hand_back_space(factory: sessionmaker[Session]) -> None:
    engine = factory.kw["bind"]
    if isinstance(engine, Engine) and engine.dialect.name == "sqlite":
        raw = engine.raw_connection()
        try:  # as a script: sqlite3's execute() steps the pragma once, one page
            raw.driver_connection.executescript(  # type: ignore[union-attr]
                f"PRAGMA incremental_vacuum({VACUUM_PAGES});"
            )
        finally:
            raw.close()
