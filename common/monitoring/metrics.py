"""Live metrics of the serving model over a time window, from the prediction log and
feedback: volume, latency, errors, realised and estimated accuracy, label coverage."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.clock import as_utc, to_iso, utcnow
from common.models.evaluation import ModelEvaluator
from common.storage.tables import (
    Alert,
    AuditEvent,
    DriftReport,
    FeedbackLabel,
    MetricSnapshot,
    ModelVersion,
    PredictionLog,
)

Z_95 = 1.959963984540054


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; (0, 1) when there is no data."""
    if total == 0:
        return 0.0, 1.0
    share = successes / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total))
    return max(0.0, centre - half / denominator), min(1.0, centre + half / denominator)


RECENT_SECONDS = 60  # the request rate is that of the last minute
NO_ERRORS = {"mae": None, "rmse": None, "r2": None}  # a classifier's regression figures


def compute_window_metrics(
    session: Session,
    model: str,
    *,
    minutes: float,
    until: datetime | None = None,
    version: ModelVersion | None = None,
    task: str = "classification",
) -> dict[str, Any]:
    """Metrics of `model`'s predictions answered in the last `minutes`, of every
    version or of one (a new champion is judged on its own answers, not its
    predecessor's).

    Requests and their latencies count once per request, however many rows it
    carried; predictions count rows. After a demo reset the window starts there.
    """
    until = until or utcnow()
    since = until - timedelta(minutes=minutes)
    reset = last_reset_at(session, model)
    if reset is not None and since < reset <= until:
        since = reset
    in_window = (
        (PredictionLog.model == model)
        & (PredictionLog.created_at >= since)
        & (PredictionLog.created_at <= until)
    )
    if version is not None:
        in_window &= PredictionLog.model_version_id == version.id
    rows = session.execute(
        select(PredictionLog.status_code, PredictionLog.latency_ms,
               PredictionLog.confidence, PredictionLog.data_quality,
               PredictionLog.request_rows, PredictionLog.created_at)
        .where(in_window)
    ).all()  # fmt: skip
    answered = [r for r in rows if r.status_code == 200]
    requests = [r for r in rows if r.request_rows > 0]
    failed = sum(r.status_code != 200 for r in requests)
    latencies = np.array([r.latency_ms for r in requests], dtype=float)
    recent_since = until - timedelta(seconds=RECENT_SECONDS)
    recent = sum(as_utc(r.created_at) >= recent_since for r in requests)
    labelled = session.execute(
        select(PredictionLog.prediction, FeedbackLabel.label)
        .join(FeedbackLabel, FeedbackLabel.prediction_id == PredictionLog.prediction_id)
        .where(in_window, PredictionLog.status_code == 200)
    ).all()  # fmt: skip
    quality: Counter[str] = Counter(
        flag.split(":", 1)[0] for r in answered for flag in (r.data_quality or [])
    )
    performance = (
        regression_performance(labelled) if task == "regression"
        else _performance(labelled)
    )  # fmt: skip
    return {
        "model": model,
        "task": task,
        "window_start": to_iso(since),
        "window_end": to_iso(until),
        "window_minutes": (until - since).total_seconds() / 60,
        "model_version": version.version if version else None,
        "timestamp": to_iso(until),
        "prediction_count": len(answered),
        "request_count": len(requests),
        "request_rate_per_min": recent * 60 / RECENT_SECONDS,
        "request_rate_seconds": RECENT_SECONDS,
        "error_rate": failed / len(requests) if requests else 0.0,
        "latency_ms": _percentiles(latencies),
        "avg_response_time": float(latencies.mean()) if len(latencies) else None,
        **performance,
        "labeled_count": len(labelled),
        "label_coverage": len(labelled) / len(answered) if answered else 0.0,
        "estimated_accuracy": _mean([r.confidence for r in answered]),
        "data_quality": dict(quality),
        "drift": latest_drift_summary(session, model),
        "open_alerts": count_open_alerts(session, model),
    }


def last_reset_at(session: Session, model: str) -> datetime | None:
    """When the demo last reset this model: the data before it is gone, so windows
    that reach further back would average over minutes with nothing in them."""
    at = session.scalar(
        select(AuditEvent.created_at)
        .where(AuditEvent.action == "demo_reset", AuditEvent.model == model)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    return as_utc(at) if at is not None else None


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


def _performance(labelled: Sequence[Any]) -> dict[str, Any]:
    if not labelled:
        return {"accuracy": None, "precision": None, "recall": None, "f1_score": None,
                "accuracy_ci": None, **NO_ERRORS}  # fmt: skip
    y_pred = [str(p) for p, _ in labelled]
    y_true = [str(t) for _, t in labelled]
    labels = sorted(set(y_true) | set(y_pred))
    with warnings.catch_warnings():  # one class seen so far is a valid window
        warnings.filterwarnings("ignore", message="A single label was found")
        report = ModelEvaluator().evaluate_predictions(y_true, y_pred, labels)
    correct = sum(p == t for p, t in zip(y_pred, y_true, strict=True))
    low, high = wilson_interval(correct, len(labelled))
    return {"accuracy": report.accuracy, "precision": report.precision,
            "recall": report.recall, "f1_score": report.f1_score,
            "accuracy_ci": {"low": low, "high": high, "level": 0.95},
            **NO_ERRORS}  # fmt: skip


def regression_performance(labelled: Sequence[Any]) -> dict[str, Any]:
    """MAE, RMSE and R² of a regressor's labelled answers; a label or prediction that
    is not a number does not count (feedback refuses them for regressors)."""
    pairs = [(_number(p), _number(t)) for p, t in labelled]
    kept = np.array([(p, t) for p, t in pairs if p is not None and t is not None],
                    dtype=float).reshape(-1, 2)  # fmt: skip
    empty = {"mae": None, "rmse": None, "r2": None, "accuracy": None,
             "precision": None, "recall": None, "f1_score": None,
             "accuracy_ci": None}  # fmt: skip
    if not len(kept):
        return empty
    errors = kept[:, 0] - kept[:, 1]
    spread = float(((kept[:, 1] - kept[:, 1].mean()) ** 2).sum())
    r2 = 1 - float((errors**2).sum()) / spread if spread > 0 else None
    return {**empty, "mae": float(np.abs(errors).mean()),
            "rmse": float(np.sqrt((errors**2).mean())), "r2": r2}  # fmt: skip


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def latest_drift_summary(session: Session, model: str) -> dict[str, Any] | None:
    report = session.scalar(
        select(DriftReport).where(DriftReport.model == model)
        .order_by(DriftReport.id.desc()).limit(1)
    )  # fmt: skip
    if report is None:
        return None
    return {"status": report.status, "drift_share": report.drift_share,
            "dataset_drift": report.dataset_drift,
            "checked_at": to_iso(report.created_at)}  # fmt: skip


def count_open_alerts(session: Session, model: str | None = None) -> int:
    """Open alerts of `model`, or of the whole deployment."""
    query = select(func.count()).select_from(Alert).where(Alert.state == "open")
    if model is not None:
        query = query.where(Alert.model == model)
    return session.scalar(query) or 0


def record_snapshot(
    session: Session, model: str, minutes: float, task: str = "classification"
) -> MetricSnapshot:
    """Store the current window's metrics of `model` for the history charts."""
    metrics = compute_window_metrics(session, model, minutes=minutes, task=task)
    now = utcnow()
    snapshot = MetricSnapshot(
        model=model,
        window_start=now - timedelta(minutes=minutes),
        window_end=now,
        prediction_count=metrics["prediction_count"],
        accuracy=metrics["accuracy"],
        metrics=metrics,
    )
    session.add(snapshot)
    session.flush()
    return snapshot


def metric_history(
    session: Session, model: str, hours: float, limit: int = 2000
) -> list[dict[str, Any]]:
    """Snapshots of `model` of the last `hours`, oldest first."""
    since = utcnow() - timedelta(hours=hours)
    rows = session.scalars(
        select(MetricSnapshot)
        .where(MetricSnapshot.model == model, MetricSnapshot.created_at >= since)
        .order_by(MetricSnapshot.id.desc()).limit(limit)
    ).all()  # fmt: skip
    return [{"at": to_iso(r.created_at), **r.metrics} for r in reversed(rows)]
