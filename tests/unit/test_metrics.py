from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from common.clock import utcnow
from common.monitoring.metrics import (
    compute_window_metrics,
    metric_history,
    wilson_interval,
)
from common.monitoring.prediction_log import log_predictions
from common.monitoring.rollups import RollupWriter
from common.storage.db import session_scope
from common.storage.tables import AuditEvent, FeedbackLabel


def test_wilson_interval_golden_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


NOW = utcnow().replace(second=30, microsecond=0)  # mid-minute: known minutes
WRITER = RollupWriter()


@pytest.fixture(autouse=True)
def _new_writer():
    """One writer per database, as one per API process."""
    global WRITER
    WRITER = RollupWriter()


def _log(
    session,
    *,
    prediction="1",
    label=None,
    status=200,
    latency=10.0,
    confidence=0.8,
    age_minutes=0.0,
    quality=None,
    request_rows=1,
):
    """One row through the log writer's own path (log row, rollups, labels)."""
    pid = uuid.uuid4().hex
    if label is not None:  # a label that came first is counted when its row lands
        session.add(FeedbackLabel(prediction_id=pid, label=label))
        session.flush()
    log_predictions(session, [{
        "prediction_id": pid, "model": "default", "model_version_id": None,
        "model_version": 1, "features": {}, "prediction": prediction,
        "confidence": confidence if status == 200 else None, "probabilities": None,
        "latency_ms": latency, "status_code": status, "data_quality": quality,
        "request_rows": request_rows,
        "created_at": NOW - timedelta(minutes=age_minutes),
    }], WRITER)  # fmt: skip


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
        m = compute_window_metrics(session, "default", minutes=15, until=NOW)
    assert (m["prediction_count"], m["request_count"]) == (20, 21)
    assert m["error_rate"] == pytest.approx(1 / 21)
    assert m["request_rate_per_min"] == 21  # all of them in the last minute
    assert m["request_rate_seconds"] == 60
    assert m["accuracy"] == pytest.approx(0.8) and m["labeled_count"] == 10
    assert m["accuracy_ci"]["low"] == pytest.approx(0.4902, abs=1e-4)
    assert (m["precision"], m["recall"]) == (0.4, 0.5)  # macro, as the holdout
    assert m["label_coverage"] == pytest.approx(0.5)
    assert m["estimated_accuracy"] == pytest.approx(0.7)
    # the 11th of 21 latencies (2, 10..19, 30 x 10), within the sketch's 1%
    assert m["latency_ms"]["p50"] == pytest.approx(19.0, rel=0.01)
    assert m["data_quality"] == {"unseen_category": 10}
    assert m["open_alerts"] == 0 and m["drift"] is None


def test_a_batch_is_one_request_for_latency_counts_and_rate(session_factory):
    """One 1000-row batch made p50 = p99 = its own latency: latency is per request."""
    with session_scope(session_factory) as session:
        _log(session, latency=5000.0, request_rows=1000)
        for _ in range(999):
            _log(session, latency=5000.0, request_rows=0)  # the batch's other rows
        for i in range(199):  # before the last minute: 1 ms to 199 ms
            _log(session, latency=float(i + 1), age_minutes=5)
    with session_scope(session_factory) as session:
        m = compute_window_metrics(session, "default", minutes=15, until=NOW)
    assert (m["prediction_count"], m["request_count"]) == (1199, 200)
    assert m["latency_ms"]["p50"] == pytest.approx(100, rel=0.01)
    assert m["latency_ms"]["p95"] == pytest.approx(190, rel=0.01)
    assert m["latency_ms"]["p99"] == pytest.approx(198, rel=0.01)
    assert m["request_rate_per_min"] == 1  # only the batch came in the last minute


def test_the_request_rate_slides_over_the_previous_minute(session_factory):
    with session_scope(session_factory) as session:
        for _ in range(60):
            _log(session, age_minutes=1)  # the whole previous minute
    with session_scope(session_factory) as session:
        m = compute_window_metrics(session, "default", minutes=15, until=NOW)
    assert m["request_rate_per_min"] == pytest.approx(
        30
    )  # half of it is in the last 60 s


def test_after_a_demo_reset_the_window_starts_at_the_reset(session_factory):
    with session_scope(session_factory) as session:
        session.add(AuditEvent(action="demo_reset", model="default", actor="t",
                               subject_type="job",
                               subject_id="1",
                               created_at=NOW - timedelta(minutes=3.5)))  # fmt: skip
        for _ in range(6):
            _log(session, age_minutes=2)
    with session_scope(session_factory) as session:
        m = compute_window_metrics(session, "default", minutes=15, until=NOW)
    assert m["window_minutes"] == pytest.approx(3.5, abs=0.05)
    assert m["request_count"] == 6 and m["request_rate_per_min"] == 0


def test_an_empty_window_has_no_accuracy_rather_than_zero(session_factory):
    with session_scope(session_factory) as session:
        m = compute_window_metrics(session, "default", minutes=5)
    assert m["prediction_count"] == 0 and m["accuracy"] is None
    assert m["latency_ms"] == {"p50": None, "p95": None, "p99": None}


def test_the_history_has_each_bucket_s_own_figures(session_factory):
    with session_scope(session_factory) as session:
        for _ in range(3):
            _log(session, label="1", latency=20.0, age_minutes=3)
        _log(session, label="0", latency=40.0, age_minutes=3)
        _log(session, label="1", latency=10.0)
    with session_scope(session_factory) as session:
        history = metric_history(session, "default", hours=1)
    assert len(history) in (60, 61) and history[0]["bucket_minutes"] == 1
    busy = [h for h in history if h["request_count"]]
    assert [h["request_count"] for h in busy] == [4, 1]
    assert [h["accuracy"] for h in busy] == [0.75, 1.0]
    assert busy[0]["request_rate_per_min"] == 4
    assert busy[0]["latency_ms"]["p50"] == pytest.approx(20, rel=0.01)
    assert sum(h["request_count"] for h in history) == 5  # empty buckets are zeros
    with session_scope(session_factory) as session:
        day = metric_history(session, "default", hours=24)
    assert day[0]["bucket_minutes"] == 4 and len(day) <= 361
