from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from common.clock import utcnow
from common.monitoring.metrics import (
    compute_window_metrics,
    metric_history,
    record_snapshot,
    wilson_interval,
)
from common.storage.db import session_scope
from common.storage.tables import AuditEvent, FeedbackLabel, PredictionLog


def test_wilson_interval_golden_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _log(
    session,
    *,
    prediction="1",
    label=None,
    status=200,
    latency=10.0,
    confidence=0.8,
    age_minutes=0.5,
    quality=None,
    request_rows=1,
):
    pid = uuid.uuid4().hex
    session.add(
        PredictionLog(
            prediction_id=pid,
            model_version=1,
            features={},
            prediction=prediction,
            confidence=confidence if status == 200 else None,
            latency_ms=latency,
            status_code=status,
            data_quality=quality,
            request_rows=request_rows,
            created_at=utcnow() - timedelta(minutes=age_minutes),
        )
    )
    if label is not None:
        session.add(FeedbackLabel(prediction_id=pid, label=label))


def test_window_metrics_from_logs_and_feedback(session_factory):
    with session_scope(session_factory) as session:
        for i in range(10):  # 8 right, 2 wrong
            _log(session, prediction="1", label="1" if i < 8 else "0", latency=10 + i)
        for _ in range(10):  # answered, not labelled
            _log(
                session,
                prediction="0",
                latency=30,
                confidence=0.6,
                quality=["unseen_category:region"],
            )
        _log(session, status=400, latency=2, prediction="")
        _log(session, age_minutes=60)  # outside a 15-minute window
    with session_scope(session_factory) as session:
        m = compute_window_metrics(session, "default", minutes=15)
    assert (m["prediction_count"], m["request_count"]) == (20, 21)
    assert m["error_rate"] == pytest.approx(1 / 21)
    assert m["request_rate_per_min"] == 21  # all of them in the last minute
    assert m["request_rate_seconds"] == 60
    assert m["accuracy"] == pytest.approx(0.8) and m["labeled_count"] == 10
    assert m["accuracy_ci"]["low"] == pytest.approx(0.4902, abs=1e-4)
    assert m["label_coverage"] == pytest.approx(0.5)
    assert m["estimated_accuracy"] == pytest.approx(0.7)
    assert m["latency_ms"]["p50"] == pytest.approx(19.0)  # failures count too
    assert m["data_quality"] == {"unseen_category": 10}
    assert m["open_alerts"] == 0 and m["drift"] is None


def test_a_batch_is_one_request_for_latency_counts_and_rate(session_factory):
    """One 1000-row batch made p50 = p99 = its own latency: latency is per request."""
    with session_scope(session_factory) as session:
        _log(session, latency=500.0, request_rows=1000)
        for _ in range(999):
            _log(session, latency=500.0, request_rows=0)  # the batch's other rows
        for i in range(9):
            _log(session, latency=float(i + 1), age_minutes=5)  # before the last minute
    with session_scope(session_factory) as session:
        m = compute_window_metrics(session, "default", minutes=15)
    assert (m["prediction_count"], m["request_count"]) == (1009, 10)
    assert m["latency_ms"]["p50"] == pytest.approx(5.5)
    assert m["latency_ms"]["p99"] == pytest.approx(500 - 0.01 * 9 * (500 - 9), abs=1)
    assert m["request_rate_per_min"] == 1  # only the batch came in the last minute


def test_after_a_demo_reset_the_window_starts_at_the_reset(session_factory):
    with session_scope(session_factory) as session:
        session.add(AuditEvent(action="demo_reset", model="default", actor="t",
                               subject_type="job",
                               subject_id="1",
                               created_at=utcnow() - timedelta(minutes=3)))  # fmt: skip
        for _ in range(6):
            _log(session, age_minutes=2)
    with session_scope(session_factory) as session:
        m = compute_window_metrics(session, "default", minutes=15)
    assert m["window_minutes"] == pytest.approx(3, abs=0.05)
    assert m["request_count"] == 6 and m["request_rate_per_min"] == 0


def test_an_empty_window_has_no_accuracy_rather_than_zero(session_factory):
    with session_scope(session_factory) as session:
        m = compute_window_metrics(session, "default", minutes=5)
    assert m["prediction_count"] == 0 and m["accuracy"] is None
    assert m["latency_ms"] == {"p50": None, "p95": None, "p99": None}


def test_snapshots_make_the_history(session_factory):
    with session_scope(session_factory) as session:
        _log(session, label="1")
        record_snapshot(session, "default", 15)
        _log(session, label="0")
        record_snapshot(session, "default", 15)
    with session_scope(session_factory) as session:
        history = metric_history(session, "default", hours=1)
    assert [h["prediction_count"] for h in history] == [1, 2]
    assert [h["accuracy"] for h in history] == [1.0, 0.5]
