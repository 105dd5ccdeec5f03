"""Retention: what aged out goes, in batches; what a retrain may still use, what made
a version and what is still open stays; the figures live on in the rollups."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from common.clock import utcnow
from common.monitoring.feedback import record_feedback
from common.monitoring.metrics import compute_window_metrics
from common.monitoring.prediction_log import log_predictions
from common.storage import retention
from common.storage.db import session_scope
from common.storage.tables import (
    Alert,
    FeedbackLabel,
    Job,
    LabelRollup,
    PredictionLog,
    PredictionRollup,
)
from tests.conftest import train_champion
from tests.logged import logged

NOW = utcnow()


def _count(session, table) -> int:
    return session.scalar(select(func.count()).select_from(table))


def test_old_rows_go_in_batches_and_the_rollups_keep_their_figures(
    session_factory, db_settings
):
    settings = db_settings.with_overrides(
        prediction_retention_days=1, retrain_feedback_days=3, prune_batch_rows=7
    )
    with session_scope(session_factory) as session:
        for _ in range(20):
            logged(session, created_at=NOW - timedelta(days=2))
        kept_for_retrain = logged(session, created_at=NOW - timedelta(days=2))
        ancient = logged(session, created_at=NOW - timedelta(days=5))
        fresh = [logged(session, created_at=NOW - timedelta(hours=1)) for _ in range(3)]
        record_feedback(session, [(kept_for_retrain, "1")])
        # a label nobody counted yet: counted before its row goes
        session.add(FeedbackLabel(prediction_id=ancient, label="0"))
    with session_scope(session_factory) as session:
        before = compute_window_metrics(session, "default", minutes=7 * 24 * 60)
    deleted = retention.prune(session_factory, settings, NOW)
    assert deleted["prediction_logs"] == 21  # 20 old and the ancient labelled one
    with session_scope(session_factory) as session:
        left = set(session.scalars(select(PredictionLog.prediction_id)))
        assert left == {kept_for_retrain, *fresh}
        assert set(session.scalars(select(FeedbackLabel.prediction_id))) == {
            kept_for_retrain
        }
        after = compute_window_metrics(session, "default", minutes=7 * 24 * 60)
    assert after["request_count"] == before["request_count"] == 25
    assert before["labeled_count"] == 1
    assert after["labeled_count"] == 2 and after["accuracy"] == 0.5
    assert retention.prune(session_factory, settings, NOW)["prediction_logs"] == 0


def test_rollups_reports_jobs_and_alerts_go_by_their_own_settings(
    session_factory, db_settings
):
    settings = db_settings.with_overrides(
        rollup_retention_days=10, job_retention_days=10, alert_retention_days=10
    )
    long_ago = NOW - timedelta(days=11)
    with session_scope(session_factory) as session:
        version = train_champion(session, db_settings)
        pid = logged(session, created_at=long_ago, model_version_id=version.id)
        record_feedback(session, [(pid, version.classes[0])])
        logged(session, created_at=NOW)
        made_version = session.get(Job, version.job_id) if version.job_id else None
        for state, finished in (("succeeded", long_ago), ("failed", long_ago),
                                ("succeeded", NOW), ("running", None)):  # fmt: skip
            session.add(Job(kind="batch_score", state=state, params={},
                            finished_at=finished, created_at=long_ago))  # fmt: skip
        for state, resolved in (("resolved", long_ago), ("resolved", NOW),
                                ("open", None)):  # fmt: skip
            session.add(Alert(model="default", rule=f"r-{state}-{resolved}",
                              subject="s", severity="warn", state=state,
                              message="m", resolved_at=resolved))  # fmt: skip
    deleted = retention.prune(session_factory, settings, NOW)
    assert deleted["prediction_rollups"] == 1 and deleted["label_rollups"] == 1
    assert deleted["jobs"] == 2 and deleted["alerts"] == 1
    with session_scope(session_factory) as session:
        assert _count(session, PredictionRollup) == 1
        assert _count(session, LabelRollup) == 0
        states = sorted(session.scalars(select(Job.state)))
        assert states == sorted(["succeeded", "running"]
                                + (["succeeded"] if made_version else []))  # fmt: skip
        assert sorted(session.scalars(select(Alert.state))) == ["open", "resolved"]


@pytest.mark.parametrize("db_settings", ["sqlite"], indirect=True)  # PostgreSQL's
def test_sqlite_hands_the_freed_space_back(session_factory, db_settings):  # autovacuum
    settings = db_settings.with_overrides(prediction_retention_days=1)
    old = NOW - timedelta(days=2)
    with session_scope(session_factory) as session:
        log_predictions(session, [{
            "prediction_id": uuid.uuid4().hex, "model": "default",
            "model_version_id": None, "model_version": 1,
            "features": {"text": "x" * 400}, "prediction": "1", "confidence": None,
            "probabilities": None, "latency_ms": 1.0, "status_code": 200,
            "data_quality": None, "request_rows": 1, "created_at": old,
        } for _ in range(3000)])  # fmt: skip
    engine = session_factory.kw["bind"]

    def pages() -> int:
        with engine.connect() as connection:
            return connection.execute(text("PRAGMA page_count")).scalar()

    full = pages()
    retention.prune(session_factory, settings, NOW)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA freelist_count")).scalar() == 0
    assert pages() < full / 2
