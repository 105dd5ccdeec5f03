"""Rollouts' core: criteria, sticky routing, and the start / promote / abort life of
one rollout per model, on a real database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from common.errors import ConflictError, InvalidInputError, NotFoundError
from common.rollouts import lifecycle, routing
from common.rollouts.criteria import Criteria
from common.storage.tables import AuditEvent, Champion, ModelVersion
from tests.factories import register_version


@pytest.fixture
def two_versions(session, db_settings, churn_frame):
    """Version 1 champion, version 2 registered beside it."""
    from common.models import registry

    first = register_version(session, db_settings, churn_frame, "churned")
    registry.promote_version(session, db_settings, first.version, reason="t")
    second = register_version(session, db_settings, churn_frame, "churned",
                              model_type="random_forest")  # fmt: skip
    session.flush()
    return first, second


def test_a_routing_key_always_reaches_the_same_arm_and_shares_hold():
    keys = [f"customer-{i}" for i in range(20_000)]
    first = [routing.to_challenger(7, 0.2, key) for key in keys]
    assert first == [routing.to_challenger(7, 0.2, key) for key in keys]
    assert sum(first) / len(keys) == pytest.approx(0.2, abs=0.01)
    other = [routing.to_challenger(8, 0.2, key) for key in keys]
    assert other != first  # another rollout places customers afresh
    unkeyed = [routing.to_challenger(7, 0.3, None) for _ in range(20_000)]
    assert sum(unkeyed) / len(unkeyed) == pytest.approx(0.3, abs=0.015)


def test_criteria_come_from_settings_and_every_bad_value_is_named(db_settings):
    defaults = Criteria.from_settings(db_settings)
    assert defaults.min_labels == db_settings.rollout_min_labels
    changed = defaults.with_changes({"min_labels": 50, "max_p99_ratio": 2})
    assert (changed.min_labels, changed.max_p99_ratio) == (50, 2.0)
    with pytest.raises(InvalidInputError) as raised:
        defaults.with_changes({"min_labels": 0, "max_error_rate": "high", "speed": 1})
    fields = {p["field"]: p["code"] for p in raised.value.details["problems"]}
    assert fields == {"criteria.speed": "unknown", "criteria.max_error_rate": "type",
                      "criteria.min_labels": "range"}  # fmt: skip


def test_one_rollout_per_model_and_promotion_makes_the_challenger_champion(
    session, db_settings, two_versions
):
    _, second = two_versions
    rollout = lifecycle.start_rollout(session, db_settings, version=2, mode="canary",
                                      share=0.2, actor="ana")  # fmt: skip
    assert (rollout.state, rollout.share, rollout.challenger.version) == (
        "running", 0.2, 2)  # fmt: skip
    with pytest.raises(ConflictError, match="is running for 'default'"):
        lifecycle.start_rollout(session, db_settings, version=2, mode="shadow")
    done = lifecycle.promote(session, db_settings, actor="ana", reason="looks good",
                             evidence={"labelled": 500})  # fmt: skip
    assert (done.state, done.decided_by, done.evidence) == (
        "promoted", "ana", {"labelled": 500})  # fmt: skip
    champion = session.get(Champion, "default")
    assert champion.model_version_id == second.id
    actions = session.scalars(select(AuditEvent.action)).all()
    assert {"rollout_start", "rollout_promote", "promote"} <= set(actions)
    with pytest.raises(NotFoundError, match="no rollout running"):
        lifecycle.abort(session, db_settings, actor="ana", reason="late")
    history = lifecycle.history(session, "default")
    assert [lifecycle.rollout_out(r)["state"] for r in history] == ["promoted"]


def test_an_aborted_rollout_leaves_the_champion_and_a_new_one_may_start(
    session, db_settings, two_versions
):
    first, _ = two_versions
    lifecycle.start_rollout(session, db_settings, version=2, mode="shadow")
    lifecycle.abort(session, db_settings, actor="monitor", reason="worse")
    assert session.get(Champion, "default").model_version_id == first.id
    again = lifecycle.start_rollout(session, db_settings, version=2, mode="ab")
    assert again.share == 0.5  # an A/B test splits evenly unless told


def test_a_champion_changed_by_hand_ends_the_rollout_instead_of_promoting(
    session, db_settings, two_versions, churn_frame
):
    from common.models import registry

    lifecycle.start_rollout(session, db_settings, version=2, mode="canary")
    third = register_version(session, db_settings, churn_frame, "churned")
    registry.promote_version(session, db_settings, third.version, reason="by hand")
    with pytest.raises(ConflictError, match="champion changed to version 3"):
        lifecycle.promote(session, db_settings, actor="ana", reason="go")
    assert lifecycle.history(session, "default")[0].reason.startswith("superseded")
    assert session.get(Champion, "default").model_version_id == third.id


@pytest.mark.parametrize(("given", "words"), [
    ({"version": 1, "mode": "canary"}, "is the champion"),
    ({"version": 9, "mode": "canary"}, "has no version 9"),
    ({"version": 2, "mode": "blue-green"}, "mode must be one of shadow, canary, ab"),
    ({"version": 2, "mode": "canary", "share": 1.0}, "the champion keeps some"),
    ({"version": 2, "mode": "ab", "share": 0}, "share must be in [0.01, 0.99]"),
])  # fmt: skip
def test_a_rollout_that_cannot_run_is_refused_with_the_reason(
    session, db_settings, two_versions, given, words
):
    with pytest.raises((InvalidInputError, ConflictError, NotFoundError)) as raised:
        lifecycle.start_rollout(session, db_settings, **given)
    assert words in raised.value.message
    assert lifecycle.find_running(session, "default") is None


def test_a_challenger_needing_features_the_champion_lacks_is_refused(
    session, db_settings, two_versions
):
    _, second = two_versions
    row = session.get(ModelVersion, second.id)
    row.feature_names = [*row.feature_names, "shoe_size"]
    with pytest.raises(InvalidInputError, match="do not carry: shoe_size"):
        lifecycle.start_rollout(session, db_settings, version=2, mode="shadow")
