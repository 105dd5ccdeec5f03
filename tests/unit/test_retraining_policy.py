from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from common import jobs, registry, retraining_policy
from common.clock import to_iso, utcnow
from common.storage.db import session_scope
from common.storage.tables import DriftReport, FeedbackLabel, Job, PredictionLog
from tests.conftest import train_champion


@pytest.fixture
def champion(session_factory, db_settings):
    settings = db_settings.with_overrides(retrain_min_labels=20)
    with session_scope(session_factory) as session:
        train_champion(session, settings)
    return settings


def _drift(session, settings, flags):
    version_id = registry.get_champion(session, settings).model_version_id
    for drifted in flags:
        session.add(
            DriftReport(
                model_version_id=version_id,
                status="drift" if drifted else "ok",
                window_size=1000,
                dataset_drift=drifted,
                drift_share=0.5 if drifted else 0.0,
                report={"drifted_features": ["age", "income"] if drifted else []},
            )
        )
    session.flush()


def _labelled(session, settings, count, correct):
    """`count` answered predictions of the champion "1", the first `correct` right."""
    version_id = registry.get_champion(session, settings).model_version_id
    for index in range(count):
        pid = uuid.uuid4().hex
        session.add(
            PredictionLog(
                prediction_id=pid,
                model_version_id=version_id,
                model_version=1,
                features={},
                prediction="1",
                latency_ms=1.0,
            )
        )
        session.add(
            FeedbackLabel(prediction_id=pid, label="1" if index < correct else "0")
        )
    session.flush()


def _published(queue):
    def enqueue(job_id):
        queue.append(job_id)
        return f"t-{job_id}"

    return enqueue


def test_drift_in_k_of_n_checks_starts_one_retrain_with_evidence(
    session_factory, champion
):
    queue = []
    with session_scope(session_factory) as session:
        _drift(session, champion, [True, False])
        assert (
            retraining_policy.apply_policy(session, champion, _published(queue)) is None
        )
        _drift(session, champion, [True])  # now 2 of the last 3
        first_drifted = session.scalars(
            select(DriftReport)
            .where(DriftReport.dataset_drift)
            .order_by(DriftReport.id)
        ).first()
        _labelled(session, champion, 19, 19)  # one short of retrain_min_labels
        assert (
            retraining_policy.apply_policy(session, champion, _published(queue)) is None
        ), "without enough labels since the drift it waits"
        _labelled(session, champion, 1, 1)
        job = retraining_policy.apply_policy(session, champion, _published(queue))
        assert job is not None and queue == [job.id]
        assert job.reason.startswith("automatic: dataset drift in 2 of the last 3")
        assert job.params["trigger"] == "drift"
        assert job.params["evidence"]["drifted_features"] == ["age", "income"]
        assert job.params["evidence"]["labelled_since"] == 20
        assert job.params["since"] == to_iso(first_drifted.created_at)
        # queued: no second one, and after it finishes the cooldown holds
        assert (
            retraining_policy.apply_policy(session, champion, _published(queue)) is None
        )
        jobs.finish_job(session, job.id, jobs.JobState.SUCCEEDED, result={})
        assert (
            retraining_policy.apply_policy(session, champion, _published(queue)) is None
        )
        session.get(Job, job.id).created_at = utcnow() - timedelta(hours=2)
        session.flush()
        assert retraining_policy.apply_policy(session, champion, _published(queue))
    assert len(queue) == 2


def test_low_live_accuracy_with_enough_labels_starts_a_retrain(
    session_factory, champion
):
    settings = champion.with_overrides(retrain_on_drift=False)
    with session_scope(session_factory) as session:
        _labelled(session, settings, 30, 9)
        job = retraining_policy.apply_policy(session, settings, _published([]))
        assert job.params["trigger"] == "accuracy"
        assert job.params["evidence"]["labeled_count"] == 30
        assert job.params["evidence"]["accuracy"] == pytest.approx(0.3)
        assert job.params["since"] is not None


def test_the_accuracy_rule_judges_the_champion_not_its_predecessor(
    session_factory, champion
):
    settings = champion.with_overrides(retrain_on_drift=False)
    with session_scope(session_factory) as session:
        _labelled(session, settings, 30, 3)  # version 1 was wrong
        train_champion(session, settings, reason="retrained")
        assert retraining_policy.apply_policy(session, settings, _published([])) is None
        _labelled(session, settings, 30, 29)  # version 2 is right
        assert retraining_policy.apply_policy(session, settings, _published([])) is None


def test_no_rule_no_retrain(session_factory, champion):
    with session_scope(session_factory) as session:
        _drift(session, champion, [False, False, False])
        assert retraining_policy.apply_policy(session, champion, _published([])) is None
