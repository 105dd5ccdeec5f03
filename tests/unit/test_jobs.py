from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from common.errors import ConflictError, DependencyError, UnprocessableDataError
from common.jobs import tracker
from common.jobs.tracker import JobConflictError, JobState
from common.storage.db import session_scope
from common.storage.tables import AuditEvent, Job


def _create(session_factory, kind="retrain"):
    with session_scope(session_factory) as session:
        return tracker.create_job(session, kind, {"x": 1}, "test").id


def test_one_active_job_per_single_flight_kind(session_factory):
    first = _create(session_factory)
    with pytest.raises(JobConflictError) as caught:
        _create(session_factory)
    assert caught.value.details["job_id"] == first and caught.value.status == 409
    assert _create(session_factory, kind="batch_score") != first  # not single-flight
    with session_scope(session_factory) as session:
        tracker.finish_job(session, first, JobState.SUCCEEDED, result={})
    assert _create(session_factory) != first  # the slot is free again


def test_concurrent_creation_makes_exactly_one_job(session_factory):
    outcomes = []

    def attempt():
        try:
            outcomes.append(_create(session_factory))
        except JobConflictError as exc:
            outcomes.append(("conflict", exc.details["job_id"]))

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = [o for o in outcomes if isinstance(o, int)]
    assert len(created) == 1
    with session_scope(session_factory) as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_submit_marks_the_job_failed_when_the_queue_is_down(session_factory):
    def broken_queue(job_id):
        raise DependencyError("the job queue (Redis) is unreachable")

    with session_scope(session_factory) as session, pytest.raises(DependencyError):
        tracker.submit_job(session, "retrain", {}, "test", broken_queue)
    with session_scope(session_factory) as session:
        job = session.scalars(select(Job)).one()
        assert job.state == "failed" and job.active_key is None
        assert job.error["message"] == "the job queue (Redis) is unreachable"
        assert job.task_id is None


def test_run_job_records_success_and_a_rerun_is_a_no_op(session_factory):
    job_id = _create(session_factory)
    calls = []

    def work(job, progress):
        calls.append(job.id)
        progress(50, "halfway")
        return {"answer": 42, "message": "done"}

    assert tracker.run_job(session_factory, job_id, "task-1", work) == {
        "answer": 42,
        "message": "done",
    }
    assert (
        tracker.run_job(session_factory, job_id, "task-2", work) is None
    )  # redelivered
    assert calls == [job_id]
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        assert (job.state, job.progress, job.stage, job.attempts) == (
            "succeeded",
            100,
            "done",  # where it ended, not its last step
            1,
        )
        assert job.task_id == "task-1" and job.started_at and job.finished_at
        actions = session.scalars(select(AuditEvent.action)).all()
        assert "job_succeeded" in actions


@pytest.mark.parametrize(
    ("error", "state", "kind"),
    [
        (
            UnprocessableDataError("one class", problems=[{"code": "one_class"}]),
            "failed",
            "UnprocessableDataError",
        ),
        (ValueError("boom"), "failed", "ValueError"),
        (TimeoutError("soft limit"), "failed", "timed_out"),
    ],
)
def test_run_job_records_failures_with_type_and_message(
    session_factory, error, state, kind
):
    job_id = _create(session_factory)

    def work(job, progress):
        raise error

    tracker.run_job(session_factory, job_id, "t", work, timeout_errors=(TimeoutError,))
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        assert job.state == state and job.error["type"] == kind
        assert job.active_key is None


def test_dependency_trouble_requeues_for_a_retry(session_factory):
    job_id = _create(session_factory)

    def work(job, progress):
        raise DependencyError("database locked")

    with pytest.raises(DependencyError):
        tracker.run_job(session_factory, job_id, "t", work)
    with session_scope(session_factory) as session:
        assert session.get(Job, job_id).state == "queued"


def test_cancel_queued_now_and_running_at_next_stage(session_factory):
    queued = _create(session_factory, kind="batch_score")
    with session_scope(session_factory) as session:
        assert tracker.request_cancel(session, queued).state == "cancelled"
    assert tracker.run_job(session_factory, queued, "t", lambda j, p: {}) is None

    running = _create(session_factory, kind="batch_score")
    stages = []

    def work(job, progress):
        progress(10, "first")
        with session_scope(session_factory) as session:
            tracker.request_cancel(session, job.id)
        stages.append("after cancel")
        progress(20, "second")  # raises: the job was cancelled
        stages.append("never")
        return {}

    tracker.run_job(session_factory, running, "t", work)
    assert stages == ["after cancel"]
    with session_scope(session_factory) as session:
        assert session.get(Job, running).state == "cancelled"
        with pytest.raises(ConflictError):
            tracker.request_cancel(session, running)


def test_list_jobs_filters_and_pages(session_factory):
    ids = [_create(session_factory, kind="batch_score") for _ in range(5)]
    with session_scope(session_factory) as session:
        tracker.finish_job(session, ids[0], JobState.FAILED, error={"type": "x"})
        rows, total = tracker.list_jobs(
            session, kind="batch_score", page=1, page_size=2
        )
        assert total == 5 and [r.id for r in rows] == ids[::-1][:2]
        rows, total = tracker.list_jobs(session, state="failed")
        assert total == 1 and rows[0].id == ids[0]


def test_a_running_job_whose_heartbeat_stopped_is_requeued(session_factory):
    from datetime import timedelta

    from common.clock import utcnow

    job_id = _create(session_factory)
    fresh = _create(session_factory, kind="batch_score")
    with session_scope(session_factory) as session:
        for ident, age in ((job_id, 120), (fresh, 5)):
            job = tracker.start_job(session, ident, "t1")
            job.heartbeat_at = utcnow() - timedelta(seconds=age)
    published = []
    requeued = tracker.requeue_stalled_jobs(
        session_factory, 60, lambda job: published.append(job.id) or "t2"
    )
    assert requeued == [job_id] and published == [job_id]
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        assert (job.state, job.task_id, job.attempts) == ("queued", "t2", 1)
        assert session.get(Job, fresh).state == "running"
    result = tracker.run_job(session_factory, job_id, "t2", lambda j, p: {"ok": True})
    assert result == {"ok": True}
    with session_scope(session_factory) as session:
        assert session.get(Job, job_id).attempts == 2


def test_a_long_job_keeps_beating_while_it_works(session_factory):
    import time

    job_id = _create(session_factory)
    beats = []

    def slow(job, progress):
        time.sleep(0.35)
        with session_scope(session_factory) as session:
            beats.append(session.get(Job, job_id).heartbeat_at)
        return {}

    tracker.run_job(session_factory, job_id, "t", slow, heartbeat_seconds=0.1)
    with session_scope(session_factory) as session:
        started = session.get(Job, job_id).started_at
    assert beats[0] > started  # updated during the work, without any progress call


def test_of_two_deliveries_of_one_job_only_one_runs_it(session_factory):
    """Two workers get the same job (a redelivery, a requeue): one claims it, the
    other does nothing while the owner beats, and takes over once it stops."""
    from datetime import timedelta

    from common.clock import utcnow

    job_id = _create(session_factory, kind="batch_score")
    started = threading.Event()
    release = threading.Event()
    runs = []

    def work(job, progress):
        runs.append(job.worker)
        started.set()
        release.wait(10)
        return {"rows": 1}

    owner = threading.Thread(
        target=tracker.run_job,
        args=(session_factory, job_id, "t1", work),
        kwargs={"worker": "celery@a"},
    )
    owner.start()
    assert started.wait(10)
    second = tracker.run_job(session_factory, job_id, "t1", work, worker="celery@b")
    release.set()
    owner.join(10)
    assert second is None and runs == ["celery@a"]
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        assert (job.state, job.attempts, job.worker) == ("succeeded", 1, "celery@a")

    # A running job whose owner stopped beating is claimed by the next delivery.
    stalled = _create(session_factory, kind="batch_score")
    with session_scope(session_factory) as session:
        tracker.start_job(session, stalled, "t2", worker="celery@a")
        session.get(Job, stalled).heartbeat_at = utcnow() - timedelta(seconds=120)
    result = tracker.run_job(
        session_factory, stalled, "t2", work, worker="celery@b", stall_seconds=60
    )
    assert result == {"rows": 1}
    with session_scope(session_factory) as session:
        job = session.get(Job, stalled)
        assert (job.state, job.attempts, job.worker) == ("succeeded", 2, "celery@b")


def test_a_task_for_a_missing_job_or_another_kind_runs_nothing(session_factory):
    """A stale task from another deployment sharing Redis must not run our job."""
    job_id = _create(session_factory, kind="batch_score")
    ran = []
    work = lambda job, progress: ran.append(job.id) or {}  # noqa: E731
    assert (
        tracker.run_job(session_factory, job_id, "t", work, kind="demo_reset") is None
    )
    assert tracker.run_job(session_factory, 9999, "t", work, kind="batch_score") is None
    assert ran == []
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        assert (job.state, job.attempts) == ("queued", 0)
    assert tracker.run_job(session_factory, job_id, "t", work, kind="batch_score") == {}
    assert ran == [job_id]


def test_a_job_queued_long_after_its_publication_is_published_again(session_factory):
    """Redis restarted without persistence: the message is gone, the row stays."""
    from datetime import timedelta

    from common.clock import utcnow

    lost, recent, cancelled = (_create(session_factory, kind="batch_score")
                               for _ in range(3))  # fmt: skip
    with session_scope(session_factory) as session:
        for ident, age in ((lost, 900), (recent, 30), (cancelled, 900)):
            session.get(Job, ident).published_at = utcnow() - timedelta(seconds=age)
        tracker.request_cancel(session, cancelled)
    published = []
    again = tracker.republish_lost_jobs(
        session_factory, 600, lambda job: published.append(job.id) or "t-new"
    )
    assert again == [lost] and published == [lost]
    assert tracker.republish_lost_jobs(session_factory, 600, lambda job: "x") == []
    with session_scope(session_factory) as session:
        assert session.get(Job, lost).task_id == "t-new"
    # The old message, if it was only slow, and the new one: the job runs once.
    runs = []
    for task in ("t-old", "t-new"):
        tracker.run_job(session_factory, lost, task, lambda j, p: runs.append(1) or {},
                     kind="batch_score")  # fmt: skip
    assert runs == [1]
