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
from sklearn.base import clone
from sqlalchemy.orm import Session, sessionmaker

from common.clock import from_iso, to_iso, utcnow
from common.config import Settings
from common.data.datasets import BUILTIN, load_dataset, resolve_data_file
from common.errors import ConflictError, InvalidInputError, UnprocessableDataError
from common.jobs.progress import ProgressCallback
from common.models import registry
from common.models.evaluation import ModelEvaluator, evaluate_regression
from common.models.training import (
    ESTIMATORS,
    ModelResult,
    ModelTrainer,
    build_estimator,
)
from common.rollouts import lifecycle
from common.storage import repositories as repo
from common.storage.db import session_scope
from common.storage.tables import FeedbackLabel, Job, ModelVersion, PredictionLog

log = logging.getLogger(__name__)


def labelled_production_data(
    session: Session, model: str, target: str, since: datetime
) -> pd.DataFrame:
    """Logged inputs of `model`'s predictions answered since `since`, with labels."""
    rows = session.execute(
        repo.labelled_since(model, since, PredictionLog.features, FeedbackLabel.label)
    ).all()
    return pd.DataFrame([{**features, target: label} for features, label in rows])


def check_retrain_params(
    session: Session, settings: Settings, params: dict[str, Any]
) -> dict[str, Any]:
    """Refuse a bad request before a job exists: unknown dataset, model type or
    estimator parameter (400/404), too few labels since `since` (422), or no
    champion to retrain (503)."""
    champion = registry.get_champion(session, settings).model_version
    if params.get("dataset"):
        load_dataset_check(settings, params["dataset"])
    model_type = params.get("model_type")
    if model_type or champion.model_type in ESTIMATORS:
        build_estimator(model_type or champion.model_type, params.get("params") or {},
                        settings.random_state)  # fmt: skip
    elif params.get("params"):
        raise InvalidInputError(
            "params apply to a model type trained here; this champion is a registered "
            f"{champion.model_type}, refitted as it is (give model_type to replace it)",
            field="params",
        )
    if params.get("since"):
        since = _parse_since(params["since"])
        labelled = repo.count_labelled_since(session, settings.model_name, since)
        check_enough_labels(settings, since, labelled)
        params["since"] = to_iso(since)
    elif not params.get("dataset") and champion.provenance is not None:
        # a registered model has no base dataset: its labels are all it learns from
        since = utcnow() - timedelta(days=settings.retrain_feedback_days)
        labelled = repo.count_labelled_since(session, settings.model_name, since)
        check_enough_labels(settings, since, labelled)
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


def _align_labels(labels: pd.Series, classes: list[Any], task: str) -> pd.Series:
    """Feedback labels are text; give them the classes' type (0/1, not "0"), or a
    regressor's numbers."""
    if task == "regression" or all(
        isinstance(c, int | float) and not isinstance(c, bool) for c in classes
    ):
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
        production = labelled_production_data(
            session, settings.model_name, current.target, since
        )
    if not production.empty:
        production[current.target] = _align_labels(
            production[current.target], list(current.classes), current.task
        )
    name = params.get("dataset") or current.dataset
    if not name and current.provenance is None:  # trained here from a frame
        name = settings.demo_dataset
    if recent or not name:  # a registered model without a dataset: labels only
        check_enough_labels(settings, since, len(production))
        described = f"{len(production)} labelled predictions since {to_iso(since)}"
        return production, name or "labelled predictions", len(production), described
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
    settings = settings.for_model(job.model or settings.default_model)
    params = job.params or {}
    with session_scope(session_factory) as session:
        current = registry.get_champion(session, settings).model_version
        session.expunge(current)
    progress(5, "building the training set")
    frame, dataset, labelled, described = _training_set(
        session_factory, settings, current, params
    )
    champion_model = registry.load_model(settings, current)
    model_type = params.get("model_type") or current.model_type
    estimator = None
    if not params.get("model_type") and current.model_type not in ESTIMATORS:
        estimator = clone_estimator(champion_model)  # a registered pipeline
    result = ModelTrainer(settings).train_model(
        frame,
        current.target,
        model_type,
        params.get("params") or {},
        dataset=dataset,
        schema=registry.input_schema(current),
        progress=lambda pct, stage: progress(10 + int(pct * 0.7), stage),
        estimator=estimator,
        task=current.task,
    )
    progress(82, "scoring the champion on the same holdout")
    gate = _gate(settings, current.task, champion_model, result)
    progress(92, "registering")
    with session_scope(session_factory) as session:
        version, went_out, rollout = _register(
            session, settings, job, result, gate["promote"]
        )
        outcome = {
            "outcome": went_out,
            "model": settings.model_name,
            "model_version": version.version,
            "previous_version": current.version,
            **gate,
            "model_type": model_type,
            "training_rows": result.training_data_size,
            "labelled_rows": labelled,
            "training_data": described,
            "reason": job.reason,
        }
        gate.pop("promote")
        if rollout is not None:
            outcome["rollout"] = rollout
        outcome["message"] = _summary(outcome)
        repo.add_audit_event(session, "retrain", "job", job.id, outcome=outcome,
                             model=settings.model_name)  # fmt: skip
    log.info("retrain model=%s job=%d %s", settings.model_name, job.id,
             outcome["message"])  # fmt: skip
    return outcome


def clone_estimator(fitted: Any) -> Any:
    """An unfitted copy of a registered pipeline, with the same parameters.

    Raises
    ------
    UnprocessableDataError
        The estimator cannot be cloned (it does not follow scikit-learn's
        get_params/set_params contract); the champion keeps serving.
    """
    try:
        return clone(fitted)
    except Exception as exc:
        raise UnprocessableDataError(
            f"the champion ({type(fitted).__name__}) cannot be cloned for a retrain: "
            f"{type(exc).__name__}: {exc}; register a new version instead"
        ) from exc


def _gate(
    settings: Settings, task: str, champion: Any, result: ModelResult
) -> dict[str, Any]:
    """Compare challenger and champion on the challenger's holdout: F1 for a
    classifier (higher is better), MAE for a regressor (lower is better)."""
    tolerance = settings.gate_f1_tolerance
    if task == "regression":
        challenger = result.metrics.mae  # type: ignore[union-attr]
        incumbent = evaluate_regression(champion, result.holdout_X,
                                        result.holdout_y).mae  # fmt: skip
        # Relative: errors are in the target's unit, which may be any size.
        promote = challenger <= incumbent * (1 + tolerance)
        return {"promote": promote, "metric": "mae", "challenger_mae": challenger,
                "champion_mae": incumbent, "tolerance": tolerance}  # fmt: skip
    challenger = result.metrics.f1_score  # type: ignore[union-attr]
    incumbent = (
        ModelEvaluator().evaluate(champion, result.holdout_X, result.holdout_y).f1_score
    )
    return {"promote": challenger >= incumbent - tolerance, "metric": "f1",
            "challenger_f1": challenger, "champion_f1": incumbent,
            "tolerance": tolerance}  # fmt: skip


def _register(
    session: Session, settings: Settings, job: Job, result: ModelResult, promote: bool
) -> tuple[ModelVersion, str, dict[str, Any] | None]:
    """Register the challenger and send it out as `rollout_mode` says: promoted at
    once (`direct`), or into a shadow or canary rollout that the monitor decides
    on live traffic. Returns the version, the outcome and the rollout started."""
    version = registry.register_model(
        session, settings, result, reason=f"retrain job {job.id}: {job.reason}",
        job_id=job.id,
    )  # fmt: skip
    if not promote:
        version.state = "rejected"
        return version, "rejected", None
    if settings.rollout_mode != "direct":
        try:
            rollout = lifecycle.start_rollout(
                session, settings, version=version.version, mode=settings.rollout_mode,
                actor=f"retrain job {job.id}",
            )  # fmt: skip
        except ConflictError as exc:  # someone's rollout is running: it goes first
            return version, "held", {"mode": settings.rollout_mode,
                                     "not_started": exc.message}  # fmt: skip
        return version, "rollout", {"id": rollout.id, "mode": rollout.mode,
                                    "share": rollout.share}  # fmt: skip
    reason = f"retrain job {job.id} passed the gate"
    registry.promote_version(session, settings, version.version, reason=reason)
    return version, "promoted", None


def _summary(outcome: dict[str, Any]) -> str:
    mode = (outcome.get("rollout") or {}).get("mode")
    verb = {
        "promoted": "promoted",
        "rejected": "rejected",
        "rollout": f"passed the gate and went into a {mode} rollout",
        "held": "passed the gate and waits (another rollout is running)",
    }[outcome["outcome"]]
    metric = outcome["metric"]
    tolerance = outcome["tolerance"]
    within = f"{tolerance:.0%} relative" if metric == "mae" else str(tolerance)
    return (
        f"version {outcome['model_version']} {verb}: {metric.upper()} "
        f"{outcome[f'challenger_{metric}']:.4f} vs champion "
        f"{outcome[f'champion_{metric}']:.4f} (tolerance {within})"
    )
