from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from common.clock import to_iso, utcnow
from common.jobs import tracker
from common.models import registry
from common.monitoring import retraining_policy
from common.storage.db import session_scope
from common.storage.tables import DriftReport, Job, PredictionLog
from tests.conftest import train_champion
from tests.logged import logged


@pytest.fixture
def champion(session_factory, db_settings):
    settings = db_settings.with_overrides(retrain_min_labels=20, retrain_recent_rows=20)
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
        logged(session, model_version_id=version_id, prediction="1",
               label="1" if index < correct else "0")  # fmt: skip


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
        # queued: no second one; finished without a fix, the retry backoff holds
        assert (
            retraining_policy.apply_policy(session, champion, _published(queue)) is None
        )
        assert _state(session, champion)["decision"] == "busy"
        tracker.finish_job(session, job.id, tracker.JobState.SUCCEEDED, result={})
        assert (
            retraining_policy.apply_policy(session, champion, _published(queue)) is None
        )
        state = _state(session, champion)
        assert state["decision"] == "waiting"
        assert "attempt 2 after a backoff of 1 min" in state["reason"]
        _age(session, job.id, minutes=2)
        assert retraining_policy.apply_policy(session, champion, _published(queue))
    assert len(queue) == 2


def _state(session, settings):
    session.flush()
    return retraining_policy.policy_state(session, settings)


def _age(session, job_id, minutes):
    job = session.get(Job, job_id)
    job.created_at = job.finished_at = utcnow() - timedelta(minutes=minutes)
    session.flush()


def test_a_retrain_that_did_not_fix_it_is_retried_after_a_doubling_backoff(
    session_factory, champion
):
    settings = champion.with_overrides(retrain_on_drift=False)
    queue = []
    with session_scope(session_factory) as session:
        _labelled(session, settings, 30, 3)
        first = retraining_policy.apply_policy(session, settings, _published(queue))
        assert _state(session, settings)["decision"] == "retrain"
        tracker.finish_job(session, first.id, tracker.JobState.SUCCEEDED,
                        result={"outcome": "rejected"})  # fmt: skip
        _age(session, first.id, minutes=1.5)  # past the first backoff (1 min)
        second = retraining_policy.apply_policy(session, settings, _published(queue))
        assert second is not None
        tracker.finish_job(session, second.id, tracker.JobState.FAILED)
        _age(session, second.id, minutes=1.5)  # the second backoff is 2 min
        assert retraining_policy.apply_policy(session, settings, _published([])) is None
        state = _state(session, settings)
        assert state["decision"] == "waiting"
        assert state["reason"].startswith("live accuracy 0.100 under 0.7 on 30 labels")
        assert f"job {second.id} (failed) has not fixed it: attempt 3 after a " \
            "backoff of 2 min" in state["reason"]  # fmt: skip
        assert state["next_action_at"] is not None
        _age(session, second.id, minutes=2.5)
        assert retraining_policy.apply_policy(session, settings, _published(queue))
    assert len(queue) == 3


def test_once_a_retrain_fixed_it_the_next_problem_waits_the_full_cooldown(
    session_factory, champion
):
    settings = champion.with_overrides(retrain_on_drift=False)
    with session_scope(session_factory) as session:
        _labelled(session, settings, 30, 3)
        job = retraining_policy.apply_policy(session, settings, _published([]))
        tracker.finish_job(session, job.id, tracker.JobState.SUCCEEDED, result={})
        _age(session, job.id, minutes=5)
        train_champion(session, settings, reason="retrained")  # a good champion
        _labelled(session, settings, 30, 30)
        assert retraining_policy.apply_policy(session, settings, _published([])) is None
        assert _state(session, settings)["decision"] == "healthy"
        _labelled(session, settings, 60, 0)  # later, it falls again
        assert retraining_policy.apply_policy(session, settings, _published([])) is None
        state = _state(session, settings)
        assert state["decision"] == "waiting"
        assert (
            f"job {job.id} fixed the last problem; the cooldown (60 min)"
            in (state["reason"])
        )


def test_the_state_says_what_the_rules_wait_for(session_factory, champion):
    with session_scope(session_factory) as session:
        assert _state(session, champion)["decision"] == "not_evaluated"
        version_id = registry.get_champion(session, champion).model_version_id
        session.add(DriftReport(model_version_id=version_id, window_size=40,
                                status="insufficient_data", report={}))  # fmt: skip
        retraining_policy.apply_policy(session, champion, _published([]))
        assert _state(session, champion)["reason"] == (
            "too few recent inputs for a drift check of this champion "
            "(40 of 200 at the last one)"
        )
        _drift(session, champion, [False, True])
        retraining_policy.apply_policy(session, champion, _published([]))
        state = _state(session, champion)
        assert state["decision"] == "watching"
        assert state["reason"] == (
            "dataset drift in 1 of the last 2 checks; it retrains at 2 of 3"
        )
        _drift(session, champion, [False, False, False])
        _labelled(session, champion, 5, 5)
        retraining_policy.apply_policy(session, champion, _published([]))
        assert _state(session, champion)["reason"] == (
            "5 of 20 labels on version 1 to judge its accuracy"
        )
        _labelled(session, champion, 20, 20)
        retraining_policy.apply_policy(session, champion, _published([]))
        state = _state(session, champion)
        assert (state["decision"], state["last_healthy_at"] is not None) == (
            "healthy",
            True,
        )


def test_the_accuracy_change_point_finds_the_fall_not_the_noise():
    from common.monitoring.accuracy_change import change_point

    rng = np.random.default_rng(3)
    before = rng.random(600) < 0.8
    after = rng.random(300) < 0.25
    index, z = change_point(np.concatenate([before, after]).astype(float), 20)
    assert abs(index - 600) <= 10 and z > 10
    steady = (rng.random(900) < 0.6).astype(float)
    assert change_point(steady, 20) is None  # no fall: no change point


def test_low_live_accuracy_with_enough_labels_starts_a_retrain(
    session_factory, champion
):
    settings = champion.with_overrides(retrain_on_drift=False)
    with session_scope(session_factory) as session:
        _labelled(session, settings, 30, 3)  # wrong throughout: no fall to find
        job = retraining_policy.apply_policy(session, settings, _published([]))
        assert job.params["trigger"] == "accuracy"
        assert job.params["evidence"]["labeled_count"] == 30
        assert job.params["evidence"]["accuracy"] == pytest.approx(0.1)
        assert job.params["since"] is not None


def test_a_fall_in_accuracy_retrains_on_the_labels_after_it_only(
    session_factory, champion
):
    settings = champion.with_overrides(retrain_on_drift=False, retrain_recent_rows=40)
    with session_scope(session_factory) as session:
        _labelled(session, settings, 200, 200)  # right, then the world changes
        _labelled(session, settings, 30, 6)
        assert retraining_policy.apply_policy(session, settings, _published([])) is None
        state = _state(session, settings)
        assert state["decision"] == "watching"  # the window is still above the floor
        _labelled(session, settings, 40, 8)
        job = retraining_policy.apply_policy(session, settings, _published([]))
        assert job is not None, _state(session, settings)
        evidence = job.params["evidence"]
        assert evidence["accuracy_before"] == pytest.approx(1.0)
        # Only the answers after the fall (its first right ones may count as before).
        assert 60 <= evidence["labeled_count"] <= 70
        assert evidence["accuracy"] < 0.2
        rows = session.scalars(select(PredictionLog).order_by(PredictionLog.id)).all()
        assert to_iso(rows[200].created_at) <= job.params["since"]
        assert job.params["since"] <= to_iso(rows[210].created_at)


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


def test_while_a_rollout_judges_a_challenger_the_policy_starts_no_retrain(
    session_factory, champion
):
    from common.rollouts import lifecycle

    queue = []
    with session_scope(session_factory) as session:
        train_champion(session, champion)  # version 2 becomes champion
        lifecycle.start_rollout(session, champion, version=1, mode="shadow")
        _drift(session, champion, [True, True, True])
        _labelled(session, champion, 30, 30)
        assert (
            retraining_policy.apply_policy(session, champion, _published(queue)) is None
        )
        state = _state(session, champion)
        assert state["decision"] == "busy" and "rollout" in state["reason"]
        lifecycle.abort(session, champion, actor="t", reason="t")
        assert retraining_policy.apply_policy(session, champion, _published(queue))
    assert len(queue) == 1
