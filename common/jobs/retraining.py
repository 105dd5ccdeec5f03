"""Retraining: train a challenger, gate it against the champion, register it.

The training set is either the base dataset plus the labelled predictions of the last
`retrain_feedback_days`, or, when the job names `since`, only the labelled predictions
logged since then: after drift the recent data is the world the model must fit, and
its reference profile must describe that world, or the drift alert never clears.

The challenger is promoted only if its F1 on its holdout is not below the champion's
F1 on the same holdout by more than `gate_f1_tolerance`; either way the version is
registered (keyed by the job) and the outcome, both scores and the reason are kept on
the job and in the audit trail.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from common.clock import from_iso, to_iso, utcnow
from common.config import Settings
from common.data.datasets import BUILTIN, load_dataset, resolve_data_file
from common.errors import InvalidInputError, UnprocessableDataError
from common.jobs.progress import ProgressCallback
from common.models import registry
from common.models.evaluation import ModelEvaluator
from common.models.training import ModelTrainer, build_estimator
from common.storage import repositories as repo
from common.storage.db import session_scope
from common.storage.tables import FeedbackLabel, Job, ModelVersion, PredictionLog

log = logging.getLogger(__name__)


def _labelled_since(since: datetime, *columns: Any) -> Select[Any]:
    """`columns` of the answered predictions logged since `since` that have a label."""
    return (
        select(*columns)
        .select_from(PredictionLog)
        .join(FeedbackLabel, FeedbackLabel.prediction_id == PredictionLog.prediction_id)
        .where(PredictionLog.created_at >= since, PredictionLog.status_code == 200)
    )


def labelled_production_data(
    session: Session, target: str, since: datetime
) -> pd.DataFrame:
    """Logged inputs of predictions answered since `since`, with their labels."""
    rows = session.execute(
        _labelled_since(since, PredictionLog.features, FeedbackLabel.label)
    ).all()
    return pd.DataFrame([{**features, target: label} for features, label in rows])


def count_labelled_since(session: Session, since: datetime) -> int:
    return session.scalar(_labelled_since(since, func.count())) or 0


def check_retrain_params(
    session: Session, settings: Settings, params: dict[str, Any]
) -> dict[str, Any]:
    """Refuse a bad request before a job exists: unknown dataset, model type or
    estimator parameter (400/404), too few labels since `since` (422), or no
    champion to retrain (503)."""
    champion = registry.get_champion(session, settings).model_version
    if params.get("dataset"):
        load_dataset_check(settings, params["dataset"])
    build_estimator(
        params.get("model_type") or champion.model_type,
        params.get("params") or {},
        settings.random_state,
    )
    if params.get("since"):
        since = _parse_since(params["since"])
        check_enough_labels(settings, since, count_labelled_since(session, since))
        params["since"] = to_iso(since)
    params.pop("reason", None)
    return params


def check_enough_labels(settings: Settings, since: datetime, labelled: int) -> None:
    """Raises `UnprocessableDataError` when a retrain on recent data has too few."""
    if labelled < settings.retrain_min_labels:
        raise UnprocessableDataError(
            f"{labelled} labelled predictions since {to_iso(since)}; training on "
            f"recent data needs {settings.retrain_min_labels} "
            "(MODELOPS_RETRAIN_MIN_LABELS): send feedback or choose an earlier since",
            labelled=labelled,
            needed=settings.retrain_min_labels,
        )


def _parse_since(value: Any) -> datetime:
    try:
        since = from_iso(str(value))
    except ValueError:
        since = None
    if since is None or since > utcnow():
        raise InvalidInputError(
            "since must be an ISO-8601 time in the past",
            problems=[{"field": "since", "code": "invalid_time",
                       "message": str(value)[:50]}],
        )  # fmt: skip
    return since


def _align_labels(labels: pd.Series, classes: list[Any]) -> pd.Series:
    """Feedback labels are text; give them the classes' type (0/1, not "0")."""
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return pd.to_numeric(labels, errors="coerce")
    return labels.astype(str)


def load_dataset_check(settings: Settings, name: str) -> None:
    """Raise unless `name` is a built-in dataset or a file in the data directory."""
    if name not in BUILTIN:
        resolve_data_file(settings, name)


def _training_set(
    session_factory: sessionmaker[Session],
    settings: Settings,
    current: ModelVersion,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, str, int, str]:
    """The frame to train on, its dataset name, its labelled rows and a description."""
    recent = bool(params.get("since"))
    since = (
        _parse_since(params["since"])
        if recent
        else utcnow() - timedelta(days=settings.retrain_feedback_days)
    )
    with session_scope(session_factory) as session:
        production = labelled_production_data(session, current.target, since)
    if not production.empty:
        production[current.target] = _align_labels(
            production[current.target], list(current.classes)
        )
    name = params.get("dataset") or current.dataset or settings.demo_dataset
    if recent:
        check_enough_labels(settings, since, len(production))
        described = f"{len(production)} labelled predictions since {to_iso(since)}"
        return production, name, len(production), described
    base = load_dataset(settings, name, target=current.target)
    frame = pd.concat([base.frame, production], ignore_index=True)
    described = f"{base.name} plus {len(production)} labelled predictions"
    return frame, base.name, len(production), described


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
        current = registry.get_champion(session, settings).model_version
        session.expunge(current)
    progress(5, "building the training set")
    frame, dataset, labelled, described = _training_set(
        session_factory, settings, current, params
    )
    model_type = params.get("model_type") or current.model_type
    result = ModelTrainer(settings).train_model(
        frame,
        current.target,
        model_type,
        params.get("params") or {},
        dataset=dataset,
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
            "labelled_rows": labelled,
            "training_data": described,
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
