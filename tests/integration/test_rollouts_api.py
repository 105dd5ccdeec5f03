"""Rollouts through the API app: start, routing by key with the arm in every answer,
shadow rows logged beside the champion's, the live comparison, promote, abort and
history, and each refusal with its reason."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import psutil
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from common.rollouts import routing
from common.storage.db import make_engine, make_session_factory, session_scope
from common.storage.tables import PredictionLog
from services.api import shadow, shadow_worker
from services.api.shadow import GATHER_SECONDS
from tests.factories import register_version
from tests.integration.conftest import AUTH

pytestmark = pytest.mark.integration


@pytest.fixture
def challenger(serving_app, serving_settings, churn_frame):
    """Version 2 (a forest) registered beside champion version 1."""
    engine = make_engine(serving_settings)
    with session_scope(make_session_factory(engine)) as session:
        register_version(session, serving_settings, churn_frame, "churned",
                         model_type="random_forest")  # fmt: skip
    engine.dispose()
    return 2


def _follow(app, present=True):
    """Wait until this API process follows the rollout (its champion poll)."""
    cache, deadline = app.extensions["model_cache"], time.monotonic() + 30
    while (cache.rollout("default") is not None) != present:
        assert time.monotonic() < deadline, "the rollout was not followed"
        cache.refresh()
        time.sleep(0.02)


def _start(client, **body):
    return client.post("/models/default/rollouts", json=body, headers=AUTH)


def test_a_canary_answers_its_share_and_a_routing_key_sticks_to_one_arm(
    serving_app, serving, challenger, row
):
    # a forest answers slower than the champion's logistic regression: this test is
    # about routing, so latency may not end the rollout under it
    started = _start(serving, version=2, mode="canary", share=0.3,
                     criteria={"max_p99_ratio": 1000})  # fmt: skip
    assert started.status_code == 201, started.json
    assert (started.json["mode"], started.json["share"]) == ("canary", 0.3)
    _follow(serving_app)
    arms = {}
    for index in range(400):
        key = f"customer-{index}"
        answer = serving.post("/predict", json={"features": row, "routing_key": key})
        assert answer.status_code == 200
        assert answer.headers["X-Model-Arm"] == answer.json["arm"]
        expected = 2 if answer.json["arm"] == "challenger" else 1
        assert answer.json["model_version"] == expected
        arms[key] = answer.json["arm"]
    share = sum(arm == "challenger" for arm in arms.values()) / len(arms)
    assert share == pytest.approx(0.3, abs=0.08)
    for key, arm in list(arms.items())[:50]:  # the header places it the same way
        again = serving.post("/predict", json={"features": row},
                             headers={"X-Routing-Key": key})  # fmt: skip
        assert again.headers["X-Model-Arm"] == arm
    current = serving.get("/models/default/rollouts/current")
    assert current.status_code == 200
    serving_app.extensions["prediction_log"].flush()
    current = serving.get("/models/default/rollouts/current").json
    arms_seen = current["comparison"]["arms"]
    total = arms_seen["challenger"]["requests"] + arms_seen["champion"]["requests"]
    assert total == 450
    assert current["verdict"]["decision"] == "continue"
    metrics = serving.get("/metrics").json
    assert metrics["request_count"] == 450  # both arms are the model's traffic


def test_a_shadow_scores_every_request_off_the_path_and_never_answers(
    serving_app, serving, serving_settings, challenger, row
):
    assert _start(serving, version=2, mode="shadow").status_code == 201
    _follow(serving_app)
    ids = []
    for _ in range(30):
        answer = serving.post("/predict", json={"instances": [row, row]})
        assert answer.json["arm"] == "champion" and answer.json["model_version"] == 1
        ids += [p["prediction_id"] for p in answer.json["predictions"]]
    serving_app.extensions["predictor"].shadow.drain()
    serving_app.extensions["prediction_log"].flush()
    engine = make_engine(serving_settings)
    with session_scope(make_session_factory(engine)) as session:
        shadows = session.execute(
            select(PredictionLog.shadow_of, PredictionLog.model_version)
            .where(PredictionLog.arm.startswith("shadow:"))
        ).all()  # fmt: skip
    engine.dispose()
    assert sorted(s for s, _ in shadows) == sorted(ids)  # each row, linked
    assert {v for _, v in shadows} == {2}
    comparison = serving.get("/models/default/rollouts/current").json["comparison"]
    assert comparison["agreement"]["compared"] == 60
    assert comparison["arms"]["champion"]["requests"] == 30
    assert serving.get("/metrics").json["request_count"] == 30  # shadows are no answers
    feedback = serving.post("/feedback", json=[{"prediction_id": i, "label": 1}
                                               for i in ids])  # fmt: skip
    assert feedback.status_code == 200
    comparison = serving.get("/models/default/rollouts/current").json["comparison"]
    assert comparison["arms"]["challenger"]["labelled"] == 60  # judged on the same rows


def test_promote_abort_and_history_through_the_api(
    serving_app, serving, challenger, row
):
    assert _start(serving, version=2, mode="ab").status_code == 201
    refused = _start(serving, version=2, mode="canary")
    assert (
        refused.status_code == 409 and "is running" in refused.json["error"]["message"]
    )
    aborted = serving.post("/models/default/rollouts/current/abort",
                           json={"reason": "not today"}, headers=AUTH)  # fmt: skip
    assert aborted.status_code == 200
    assert (aborted.json["state"], aborted.json["reason"]) == ("aborted", "not today")
    assert serving.get("/models/default/rollouts/current").status_code == 404
    started = _start(serving, version=2, mode="canary", share=0.5)
    assert started.status_code == 201
    _follow(serving_app)
    # the process says it follows the rollout: the challenger is loaded here
    following = {"rollout_id": started.json["id"], "challenger_version": 2}
    assert serving.get("/readyz").json["rollouts"] == {"default": following}
    promoted = serving.post("/models/default/rollouts/current/promote", headers=AUTH)
    assert promoted.status_code == 200 and promoted.json["state"] == "promoted"
    assert serving.get("/model/status").json["version"] == 2
    history = serving.get("/models/default/rollouts").json["rollouts"]
    assert [(r["mode"], r["state"]) for r in history] == [
        ("canary", "promoted"), ("ab", "aborted")]  # fmt: skip
    _follow(serving_app, present=False)  # the rollout ended: one version serves
    assert serving.get("/readyz").json["rollouts"] == {}
    answer = serving.post("/predict", json={"features": row})
    assert answer.json["arm"] == "champion"


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"version": 2, "mode": "blue"}, 400, "mode"),
    ({"version": 2, "mode": "canary", "share": 1.0}, 400, "keeps some traffic"),
    ({"version": 2, "mode": "canary", "criteria": {"max_p99_ratio": 0.5}}, 400,
     "max_p99_ratio"),
    ({"version": 7, "mode": "shadow"}, 404, "has no version 7"),
    ({"version": 1, "mode": "shadow"}, 409, "is the champion"),
])  # fmt: skip
def test_a_rollout_that_cannot_start_says_why(serving, challenger, body, status,
                                               words):  # fmt: skip
    answer = _start(serving, **body)
    assert answer.status_code == status, answer.json
    assert words in str(answer.json["error"])


def test_starting_a_rollout_needs_the_api_key(serving, challenger):
    body = {"version": 2, "mode": "shadow"}
    answer = serving.post("/models/default/rollouts", json=body)
    assert answer.status_code == 401


def test_a_request_for_a_challenger_still_loading_waits_for_it(
    serving_app, serving, challenger, row, monkeypatch
):
    """From the moment a process reads a new canary, every key answers from its own
    arm: one for the challenger waits while the challenger loads (within the time
    budget) instead of getting the champion once and the challenger after."""
    import services.api.model_cache as model_cache

    real_load = model_cache.load_serving

    def slow_load(settings, session_factory, name, version, generation):
        if generation == 0:  # a challenger: it takes a moment to load
            time.sleep(0.3)
        return real_load(settings, session_factory, name, version, generation)

    monkeypatch.setattr(model_cache, "load_serving", slow_load)
    started = _start(serving, version=2, mode="canary", share=0.5,
                     criteria={"max_p99_ratio": 1000})  # fmt: skip
    assert started.status_code == 201
    cache = serving_app.extensions["model_cache"]
    cache.refresh()  # this process reads the rollout: its challenger starts loading
    assert cache.plan("default") is not None and cache.rollout("default") is None
    answered = []
    for index in range(30):
        key = f"early-{index}"
        answer = serving.post("/predict", json={"features": row, "routing_key": key})
        assert answer.status_code == 200
        answered.append(answer.json["arm"])
        chosen = routing.to_challenger(started.json["id"], 0.5, key)
        assert answer.json["arm"] == ("challenger" if chosen else "champion"), index
    assert "challenger" in answered and "champion" in answered


def _shadowed(serving, row, requests):
    """Prediction ids of `requests` two-row requests, all answered by the champion."""
    ids = []
    for _ in range(requests):
        answer = serving.post("/predict", json={"instances": [row, row]})
        assert answer.status_code == 200 and answer.json["arm"] == "champion"
        ids += [p["prediction_id"] for p in answer.json["predictions"]]
    return ids


def _shadow_rows_of(settings, ids):
    engine = make_engine(settings)
    with session_scope(make_session_factory(engine)) as session:
        found = session.scalars(
            select(PredictionLog.shadow_of).where(PredictionLog.shadow_of.in_(ids))
        ).all()
    engine.dispose()
    return sorted(found)


# SQLite alone: the shadow process writes through the same log writer on both
# backends, and the test above already checks its rows on PostgreSQL
@pytest.mark.parametrize("api_settings", ["sqlite"], indirect=True)
def test_a_shadow_process_that_dies_is_replaced_and_the_champion_never_notices(
    serving_app, serving, serving_settings, challenger, row, monkeypatch
):
    monkeypatch.setattr(shadow, "RESTART_SECONDS", 0.0)
    assert _start(serving, version=2, mode="shadow").status_code == 201
    _follow(serving_app)
    scorer = serving_app.extensions["predictor"].shadow
    before = _shadowed(serving, row, 5)
    assert scorer.drain()
    first = scorer.pid
    assert first is not None and first != os.getpid()
    # on SQLite it writes its rows at the API process's priority: a niced holder
    # of the one write lock would make every writer wait (writer_niceness)
    assert serving_settings.writer_niceness(serving_settings.rollout_shadow_nice) == 0
    assert psutil.Process(first).nice() == os.getpriority(os.PRIO_PROCESS, 0)
    assert os.sched_getscheduler(first) == os.SCHED_BATCH  # it never preempts them
    assert _shadow_rows_of(serving_settings, before) == sorted(before)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while scorer.pid is not None:  # reaped by the scorer, as its own child
        assert time.monotonic() < deadline, "the killed shadow process lives on"
        time.sleep(0.01)
    after = []  # answered all the same, and shadowed again, from the first on:
    for _ in range(8):  # traffic spread over the new process's start (seconds)
        after += _shadowed(serving, row, 1)
        time.sleep(GATHER_SECONDS)  # one gathering each
    assert scorer.drain()
    second = scorer.pid
    assert second is not None and second != first
    assert _shadow_rows_of(serving_settings, after) == sorted(after)
    scorer.stop()  # the API process stopping stops its shadow process
    assert scorer.pid is None and not psutil.pid_exists(second)


def test_shadow_rows_the_shadow_cannot_take_are_dropped_and_counted(
    serving_app, serving, serving_settings, challenger, row, monkeypatch
):
    monkeypatch.setattr(shadow, "MAX_IN_FLIGHT", 0)  # as if it never kept up
    monkeypatch.setattr(shadow, "STARTING_IN_FLIGHT", 0)
    assert _start(serving, version=2, mode="shadow").status_code == 201
    _follow(serving_app)

    def dropped():
        return (
            REGISTRY.get_sample_value(
                "modelops_shadow_dropped_total", {"model": "default"}
            )
            or 0.0
        )

    was = dropped()
    ids = _shadowed(serving, row, 10)
    assert serving_app.extensions["predictor"].shadow.drain()
    assert dropped() - was == len(ids) == 20
    assert _shadow_rows_of(serving_settings, ids) == []


def test_a_shadow_process_ends_when_its_api_process_is_gone(settings):
    """The API process killed outright closes its end of the pipe: the shadow
    process sees the end and exits (no process left behind)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=shadow_worker.run, args=(theirs, settings))
    process.start()
    theirs.close()
    ours.close()
    process.join(60)
    assert process.exitcode == 0
