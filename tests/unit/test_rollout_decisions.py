"""A rollout judged on its arms' logged answers and labels (through the rollups, as
the API writes them): intervals, shadow agreement, and the monitor's decisions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from common.clock import utcnow
from common.models import registry
from common.monitoring.feedback import record_feedback
from common.rollouts import lifecycle
from common.rollouts.arms import logged_arm
from common.rollouts.comparison import compare, newcombe, wilson
from common.rollouts.monitor import monitor_rollout
from common.storage.tables import Alert, Champion, Rollout
from tests.factories import register_version
from tests.logged import logged


@pytest.fixture
def rollout(session, db_settings, churn_frame, request):
    """Version 1 champion, version 2 in a rollout of the mode the test asks for."""
    mode, criteria = getattr(request, "param", ("canary", {"min_labels": 100}))
    first = register_version(session, db_settings, churn_frame, "churned")
    registry.promote_version(session, db_settings, first.version, reason="t")
    register_version(session, db_settings, churn_frame, "churned")
    started = lifecycle.start_rollout(session, db_settings, version=2, mode=mode,
                                      criteria=criteria)  # fmt: skip
    started.started_at = utcnow() - timedelta(minutes=1)
    session.flush()
    return started


def _answers(session, rollout, arm, n, correct, **fields):
    """`n` labelled answers of one arm, the first `correct` of them right."""
    version = (rollout.challenger_version_id if arm != "champion"
               else rollout.champion_version_id)  # fmt: skip
    ids = []
    for index in range(n):
        ids.append(logged(session, model_version_id=version,
                          arm=logged_arm(arm, rollout.id), prediction="1",
                          label="1" if index < correct else "0", **fields))  # fmt: skip
    return ids


def test_intervals_are_wilson_and_newcombe():
    share = wilson(81, 100)
    assert share["value"] == 0.81
    assert (share["low"], share["high"]) == pytest.approx((0.7222, 0.8749), abs=1e-4)
    # Newcombe (1998), table II, example (a): 56/70 against 48/80
    diff = newcombe(48, 80, 56, 70)
    assert (diff["low"], diff["high"]) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_a_worse_canary_is_aborted_and_the_champion_stays(session, db_settings,
                                                          rollout):  # fmt: skip
    _answers(session, rollout, "champion", 400, 360)
    _answers(session, rollout, "challenger", 100, 50)
    decision = monitor_rollout(session, db_settings)
    assert decision.verdict.decision == "abort"
    assert decision.verdict.criterion == "max_accuracy_drop"
    assert "worse: accuracy -40.0%" in decision.verdict.reason
    ended = session.get(Rollout, rollout.id)
    assert ended.state == "aborted" and ended.decided_by == "monitor"
    assert ended.evidence["arms"]["challenger"]["labelled"] == 100
    assert session.get(Champion, "default").model_version_id == (
        rollout.champion_version_id)  # fmt: skip
    alert = session.scalar(select(Alert).where(Alert.rule == "rollout_aborted"))
    assert alert is not None and "max_accuracy_drop" in alert.message


def test_a_good_canary_waits_for_its_labels_then_is_promoted(session, db_settings,
                                                             rollout):  # fmt: skip
    _answers(session, rollout, "champion", 400, 320)
    _answers(session, rollout, "challenger", 60, 50)
    waiting = monitor_rollout(session, db_settings)
    assert waiting.verdict.decision == "continue"
    assert waiting.verdict.reason.startswith("60 of 100 labelled requests per arm")
    # The look is recorded: an operator tells "not judged yet" from "undecided".
    assert session.get(Rollout, rollout.id).checked_at is not None
    _answers(session, rollout, "challenger", 140, 125)
    decision = monitor_rollout(session, db_settings)
    assert decision.verdict.decision == "promote", decision.verdict.reason
    assert session.get(Champion, "default").model_version_id == (
        rollout.challenger_version_id)  # fmt: skip
    assert session.get(Rollout, rollout.id).state == "promoted"


def test_a_failing_challenger_is_aborted_on_its_error_rate(session, db_settings,
                                                           rollout):  # fmt: skip
    _answers(session, rollout, "champion", 50, 45)
    for _ in range(12):
        logged(session, model_version_id=rollout.challenger_version_id,
               arm=logged_arm("challenger", rollout.id), status_code=500,
               prediction="")  # fmt: skip
    decision = monitor_rollout(session, db_settings)
    assert decision.verdict.criterion == "max_error_rate"
    assert "failed 12 of 12 requests" in decision.verdict.reason


def test_an_undecided_rollout_is_aborted_at_its_deadline(session, db_settings,
                                                         rollout):  # fmt: skip
    rollout.started_at = utcnow() - timedelta(days=2)
    session.flush()
    decision = monitor_rollout(session, db_settings)
    assert decision.verdict.criterion == "max_duration_minutes"
    assert session.get(Rollout, rollout.id).state == "aborted"


@pytest.mark.parametrize("rollout", [("shadow", {"min_labels": 50})], indirect=True)
def test_a_shadow_is_judged_on_the_same_rows_with_labels_that_came_later(
    session, db_settings, rollout
):
    champion_ids = _answers_unlabelled(session, rollout, 80)
    for index, champion_id in enumerate(champion_ids):  # the challenger disagrees on
        logged(session, model_version_id=rollout.challenger_version_id,  # one in four
               arm=logged_arm("shadow", rollout.id), shadow_of=champion_id,
               request_rows=1,
               prediction="0" if index % 4 == 0 else "1",
               champion_prediction="1")  # fmt: skip
    record_feedback(session, [(i, "1") for i in champion_ids])
    comparison = compare(session, rollout, "classification")
    shadow = comparison["arms"]["challenger"]
    assert (shadow["labelled"], shadow["accuracy"]["value"]) == (80, 0.75)
    assert comparison["agreement"]["compared"] == 80
    assert comparison["agreement"]["value"] == 0.75
    metrics_requests = comparison["arms"]["champion"]["requests"]
    assert metrics_requests == 80  # shadow rows are not the champion's traffic
    decision = monitor_rollout(session, db_settings)
    assert decision.verdict.decision == "abort"  # 75% against 100%


def _answers_unlabelled(session, rollout, n):
    return [logged(session, model_version_id=rollout.champion_version_id,
                   arm=logged_arm("champion", rollout.id), prediction="1")
            for _ in range(n)]  # fmt: skip


def test_a_champion_promoted_by_hand_supersedes_the_rollout(
    session, db_settings, rollout, churn_frame
):
    third = register_version(session, db_settings, churn_frame, "churned")
    registry.promote_version(session, db_settings, third.version, reason="by hand")
    decision = monitor_rollout(session, db_settings)
    assert decision.verdict.criterion == "superseded"
    assert session.get(Rollout, rollout.id).state == "aborted"
    assert monitor_rollout(session, db_settings) is None


def test_two_rollouts_in_one_minute_never_mix(session, db_settings, rollout):
    _answers(session, rollout, "challenger", 30, 10)
    lifecycle.abort(session, db_settings, actor="t", reason="t")
    again = lifecycle.start_rollout(session, db_settings, version=2, mode="canary")
    comparison = compare(session, again, "classification")
    assert comparison["arms"]["challenger"]["requests"] == 0  # the first one's rows
