"""Retraining: base data plus labelled production data, train, gate, register.

The challenger is promoted only if its F1 on its holdout is not below the champion's
F1 on the same holdout by more than `gate_f1_tolerance`; either way the version is
registered (keyed by the job) and the outcome, both scores and the reason are kept on
the job and in the audit trail.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from common import registry
from common.clock import utcnow
from common.config import Settings
from common.datasets import BUILTIN, load_dataset, resolve_data_file
from common.evaluation import ModelEvaluator
from common.progress import ProgressCallback
from common.storage import repositories as repo
from common.storage.db import session_scope
from common.storage.tables import FeedbackLabel, Job, ModelVersion, PredictionLog
from common.training import ModelTrainer, build_estimator

log = logging.getLogger(__name__)


def labelled_production_data(
    session: Session, target: str, since_days: int
) -> pd.DataFrame:
    """Logged inputs of recent predictions joined with their feedback labels."""
    since = utcnow() - timedelta(days=since_days)
    rows = session.execute(
        select(PredictionLog.features, FeedbackLabel.label)
        .join(FeedbackLabel, FeedbackLabel.prediction_id == PredictionLog.prediction_id)
        .where(PredictionLog.created_at >= since)
    ).all()
    return pd.DataFrame([{**features, target: label} for features, label in rows])


def check_retrain_params(
    session: Session, settings: Settings, params: dict[str, Any]
) -> dict[str, Any]:
    """Refuse a bad request before a job exists: unknown dataset, model type or
    estimator parameter (400/404), or no champion to retrain (503)."""
    champion = registry.get_champion(session, settings).model_version
    if params.get("dataset"):
        load_dataset_check(settings, params["dataset"])
    build_estimator(
        params.get("model_type") or champion.model_type,
        params.get("params") or {},
        settings.random_state,
    )
    params.pop("reason", None)
    return params


def _align_labels(labels: pd.Series, like: pd.Series) -> pd.Series:
    """Feedback labels are text; give them the base target's type (0/1, not "0")."""
    if pd.api.types.is_numeric_dtype(like):
        return pd.to_numeric(labels, errors="coerce")
    return labels.astype(str)


def load_dataset_check(settings: Settings, name: str) -> None:
    """Raise unless `name` is a built-in dataset or a file in the data directory."""
    if name not in BUILTIN:
        resolve_data_file(settings, name)


def run_retrain(
    session_factory: sessionmaker[Session],
    settings: Settings,
    job: Job,
    progress: ProgressCallback,
) -> dict[str, Any]:
    """Train a challenger for `job`, gate it against the champion, register it.

    Raises
    ------
    ModelNotReadyError
        There is no champion to retrain.
    UnprocessableDataError
        The training set fails validation (every problem listed); nothing changes.
    """
    params = job.params or {}
    with session_scope(session_factory) as session:
        champion = registry.get_champion(session, settings)
        current = champion.model_version
        session.expunge(current)
        production = labelled_production_data(
            session, current.target, settings.retrain_feedback_days
        )
    progress(5, "building the training set")
    base = load_dataset(settings, params.get("dataset") or current.dataset or
                        settings.demo_dataset, target=current.target)  # fmt: skip
    frame = base.frame
    if not production.empty:
        production[current.target] = _align_labels(
            production[current.target], frame[current.target]
        )
        frame = pd.concat([frame, production], ignore_index=True)
    model_type = params.get("model_type") or current.model_type
    result = ModelTrainer(settings).train_model(
        frame,
        current.target,
        model_type,
        params.get("params") or {},
        dataset=base.name,
        schema=registry.input_schema(current),
        progress=lambda pct, stage: progress(10 + int(pct * 0.7), stage),
    )
    progress(82, "scoring the champion on the same holdout")
    champion_f1 = (
        ModelEvaluator()
        .evaluate(
            registry.load_model(settings, current), result.holdout_X, result.holdout_y
        )
        .f1_score
    )
    promote = result.metrics.f1_score >= champion_f1 - settings.gate_f1_tolerance
    progress(92, "registering")
    with session_scope(session_factory) as session:
        version = _register(session, settings, job, result, promote)
        outcome = {
            "outcome": "promoted" if promote else "rejected",
            "model_version": version.version,
            "previous_version": current.version,
            "challenger_f1": result.metrics.f1_score,
            "champion_f1": champion_f1,
            "tolerance": settings.gate_f1_tolerance,
            "model_type": model_type,
            "training_rows": result.training_data_size,
            "labelled_rows": len(production),
            "reason": job.reason,
        }
        outcome["message"] = _summary(outcome)
        repo.add_audit_event(session, "retrain", "job", job.id, outcome=outcome)
    log.info("retrain job=%d %s", job.id, outcome["message"])
    return outcome


def _register(
    session: Session, settings: Settings, job: Job, result: Any, promote: bool
) -> ModelVersion:
    version = registry.register_model(
        session, settings, result, reason=f"retrain job {job.id}: {job.reason}",
        job_id=job.id,
    )  # fmt: skip
    champion = registry.get_champion(session, settings)
    if promote and champion.model_version_id != version.id:
        registry.promote_version(
            session,
            settings,
            version.version,
            reason=f"retrain job {job.id} passed the gate",
        )
    elif not promote:
        version.state = "rejected"
    return version


def _summary(outcome: dict[str, Any]) -> str:
    verb = "promoted" if outcome["outcome"] == "promoted" else "rejected"
    return (
        f"version {outcome['model_version']} {verb}: F1 {outcome['challenger_f1']:.4f} "
        f"vs champion {outcome['champion_f1']:.4f} (tolerance {outcome['tolerance']})"
    )
