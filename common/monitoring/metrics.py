"""Live metrics of the serving model over a time window, from the prediction log and
feedback: volume, latency, errors, realised and estimated accuracy, label coverage."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.clock import as_utc, to_iso, utcnow
from common.monitoring import rollup_reads
from common.storage.tables import (
    Alert,
    AuditEvent,
    DriftReport,
    ModelVersion,
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


NO_ERRORS = {"mae": None, "rmse": None, "r2": None}  # a classifier's regression figures
HISTORY_POINTS = 360  # buckets in a history, whatever its length


def _window_start(
    session: Session, model: str, since: datetime, until: datetime
) -> datetime:
    """`since`, or a demo reset within the window: what came before it is gone."""
    reset = last_reset_at(session, model)
    return reset if reset is not None and since < reset <= until else since


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
    predecessor's), from the per-minute rollups.

    Requests and their latencies count once per request, however many rows it
    carried; predictions count rows. After a demo reset the window starts there.
    """
    until = until or utcnow()
    since = _window_start(session, model, until - timedelta(minutes=minutes), until)
    number = version.version if version is not None else None
    version_id = version.id if version is not None else None
    totals = rollup_reads.window_totals(session, model, since, until, version_id)
    recent = rollup_reads.recent_requests(session, model, until, version_id)
    return {
        "model": model,
        "task": task,
        "window_start": to_iso(since),
        "window_end": to_iso(until),
        "window_minutes": (until - since).total_seconds() / 60,
        "model_version": number,
        "timestamp": to_iso(until),
        "prediction_count": totals.predictions,
        "request_count": totals.requests,
        "request_rate_per_min": recent,
        "request_rate_seconds": 60,
        "error_rate": totals.errors / totals.requests if totals.requests else 0.0,
        "latency_ms": totals.latency_percentiles(),
        "avg_response_time": (
            totals.latency_sum / totals.requests if totals.requests else None
        ),
        **performance(totals, task),
        "labeled_count": totals.labelled,
        "label_coverage": (
            totals.labelled / totals.predictions if totals.predictions else 0.0
        ),
        "estimated_accuracy": totals.estimated_accuracy(),
        "data_quality": dict(totals.quality),
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


def performance(totals: rollup_reads.Totals, task: str) -> dict[str, Any]:
    """Accuracy and the other figures of a classifier, or a regressor's errors."""
    empty = {"accuracy": None, "precision": None, "recall": None, "f1_score": None,
             "accuracy_ci": None, **NO_ERRORS}  # fmt: skip
    if task == "regression":
        return {**empty, **totals.regression_errors()}
    labelled = sum(n for n in totals.pairs.values() if n > 0)
    if not labelled:
        return empty
    scores = macro_scores(totals.pairs)
    low, high = wilson_interval(scores["correct"], labelled)
    return {**empty, "accuracy": scores["correct"] / labelled,
            "precision": scores["precision"], "recall": scores["recall"],
            "f1_score": scores["f1_score"],
            "accuracy_ci": {"low": low, "high": high, "level": 0.95}}  # fmt: skip


def macro_scores(pairs: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    """Macro precision, recall and F1 over every class seen, from counts per
    (predicted, true) pair: what scikit-learn's `precision_recall_fscore_support`
    (average="macro", zero_division=0) gives on the rows, without its per-call
    validation, which cost ~75 ms a read (a unit test holds the two equal)."""
    labels = sorted({p for p, _ in pairs} | {t for _, t in pairs})
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)))  # rows: true, columns: predicted
    for (predicted, true), count in pairs.items():
        if count > 0:
            matrix[index[true], index[predicted]] += count
    hits = np.diag(matrix)
    predicted_totals, true_totals = matrix.sum(axis=0), matrix.sum(axis=1)
    precision = np.divide(hits, predicted_totals, out=np.zeros_like(hits),
                          where=predicted_totals > 0)  # fmt: skip
    recall = np.divide(hits, true_totals, out=np.zeros_like(hits),
                       where=true_totals > 0)  # fmt: skip
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(hits),
                   where=both > 0)  # fmt: skip
    return {"correct": int(hits.sum()), "precision": float(precision.mean()),
            "recall": float(recall.mean()), "f1_score": float(f1.mean())}  # fmt: skip


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


def metric_history(
    session: Session, model: str, hours: float, task: str = "classification"
) -> list[dict[str, Any]]:
    """`model`'s last `hours` in at most HISTORY_POINTS buckets, oldest first, each
    with the figures of its own minutes (from the rollups, so empty buckets too)."""
    until = utcnow()
    since = _window_start(session, model, until - timedelta(hours=hours), until)
    width = max(1, math.ceil(hours * 60 / HISTORY_POINTS))
    points = []
    for start, totals in rollup_reads.bucket_totals(
        session, model, since, until, width
    ):
        seconds = min((until - start).total_seconds(), width * 60)
        points.append({
            "at": to_iso(start),
            "bucket_minutes": width,
            "prediction_count": totals.predictions,
            "request_count": totals.requests,
            "request_rate_per_min": totals.requests * 60 / max(seconds, 1.0),
            "error_rate": totals.errors / totals.requests if totals.requests else 0.0,
            "latency_ms": totals.latency_percentiles(),
            "labeled_count": totals.labelled,
            "estimated_accuracy": totals.estimated_accuracy(),
            **performance(totals, task),
        })  # fmt: skip
    return points
