"""Job rows: the state machine of long work, its progress, and its single flight.

    queued ──► running ──► succeeded | failed | cancelled
       └──────────────────────────────────────► cancelled

A finished job never runs again: a redelivered task finds it finished and does
nothing. At most one job of a single-flight kind (retrain) is queued or running; the
database enforces it with a unique `active_key`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.clock import utcnow
from common.errors import AppError, ConflictError, DependencyError, JobNotFoundError
from common.jobs.progress import ProgressCallback
from common.storage import repositories as repo
from common.storage.db import session_scope
from common.storage.tables import Job

log = logging.getLogger(__name__)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
SINGLE_FLIGHT = {"retrain", "demo_reset"}


class JobConflictError(ConflictError):
    code = "job_conflict"


class JobCancelledError(AppError):
    """Raised inside running work when its job was cancelled."""

    code = "job_cancelled"


FINAL_STAGE = {
    JobState.SUCCEEDED: "done",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFoundError(f"job {job_id} not found", job_id=job_id)
    return job


def active_key(kind: str, model: str | None) -> str | None:
    """The single-flight key: one active retrain per model, one demo reset."""
    if kind not in SINGLE_FLIGHT:
        return None
    return f"{kind}:{model}" if model else kind


def find_active(session: Session, kind: str, model: str | None = None) -> Job | None:
    """The queued or running job of a single-flight kind (and model), if any."""
    return session.scalar(select(Job).where(Job.active_key == active_key(kind, model)))


def list_jobs(
    session: Session,
    *,
    kind: str | None = None,
    state: str | None = None,
    model: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> tuple[Sequence[Job], int]:
    """Jobs newest first, with the total count for the filter."""
    query = select(Job)
    if kind:
        query = query.where(Job.kind == kind)
    if model:
        query = query.where(Job.model == model)
    if state:
        query = query.where(Job.state == state)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Job.id.desc()).offset((page - 1) * page_size).limit(page_size)
    ).all()
    return rows, total


def create_job(
    session: Session,
    kind: str,
    params: dict[str, Any],
    reason: str,
    model: str | None = None,
) -> Job:
    """Add a queued job, of `model` when it works on one.

    Raises
    ------
    JobConflictError
        A job of this single-flight kind is already queued or running for the model
        (its id is in the details).
    """
    key = active_key(kind, model)
    job = Job(kind=kind, model=model, state=JobState.QUEUED, params=params,
              reason=reason, active_key=key)  # fmt: skip
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        active = session.scalar(select(Job).where(Job.active_key == key))
        of = f" of model {model!r}" if model else ""
        raise JobConflictError(
            f"a {kind} job{of} is already {active.state if active else 'active'}",
            job_id=active.id if active else None,
        ) from None
    return job


def submit_job(
    session: Session,
    kind: str,
    params: dict[str, Any],
    reason: str,
    enqueue: Callable[[int], str],
    model: str | None = None,
) -> Job:
    """Commit a queued job, then hand its id to the queue.

    The row is committed first because the worker re-reads it. If the queue cannot be
    reached the job is marked failed with the reason, so no orphan stays queued.

    Raises
    ------
    JobConflictError
        Another job of a single-flight kind is active.
    DependencyError
        The broker did not take the job.
    """
    job = create_job(session, kind, params, reason, model)
    session.commit()
    try:
        job.task_id = enqueue(job.id)
        job.published_at = utcnow()
    except DependencyError as exc:
        finish_job(session, job.id, JobState.FAILED, error=_error(exc))
        session.commit()
        raise
    session.commit()
    log.info("job queued id=%d kind=%s task=%s", job.id, kind, job.task_id)
    return job


def start_job(
    session: Session,
    job_id: int,
    task_id: str | None,
    *,
    worker: str | None = None,
    stall_seconds: float = 60.0,
    kind: str | None = None,
) -> Job | None:
    """Claim a job for this worker and move it to running; None when there is
    nothing to do here.

    A task whose job is missing or of another `kind` is refused: it comes from
    another deployment (or a test) sharing this Redis, and must not run this
    database's job with the wrong code.

    The claim is one conditional UPDATE, so of two deliveries of the same job (a
    redelivery, a requeue, two workers) exactly one wins. A job stays claimable while
    queued, or while running with a heartbeat older than `stall_seconds` (its worker
    died). A finished job stays as it is; one cancelled while queued ends cancelled.
    """
    job = session.get(Job, job_id)
    if job is None or (kind is not None and job.kind != kind):
        log.error("a %s task names job %d, which is %s here; ignored (is Redis shared "
                  "with another deployment?)", kind or "job", job_id,
                  f"a {job.kind} job" if job else "missing")  # fmt: skip
        return None
    if job.state in FINISHED:
        log.info("job %d already %s; nothing to do", job_id, job.state)
        return None
    if job.cancel_requested:
        finish_job(
            session, job_id, JobState.CANCELLED, message="cancelled before start"
        )
        return None
    now = utcnow()
    claimable = or_(
        Job.state == JobState.QUEUED,
        and_(
            Job.state == JobState.RUNNING,
            or_(
                Job.heartbeat_at.is_(None),
                Job.heartbeat_at < now - timedelta(seconds=stall_seconds),
            ),
        ),
    )
    claimed = session.execute(
        update(Job)
        .where(Job.id == job_id, claimable)
        .values(
            state=JobState.RUNNING,
            started_at=func.coalesce(Job.started_at, now),
            heartbeat_at=now,
            attempts=Job.attempts + 1,
            task_id=task_id or Job.task_id,
            worker=worker,
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        log.info("job %d is running on %s; this delivery does nothing",
                 job_id, job.worker)  # fmt: skip
        return None
    session.refresh(job)
    return job


def finish_job(
    session: Session,
    job_id: int,
    state: JobState,
    *,
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    message: str | None = None,
) -> Job:
    """Record the outcome and free the single-flight slot."""
    job = get_job(session, job_id)
    job.state = state
    job.finished_at = utcnow()
    job.active_key = None
    job.result = result
    job.error = error
    if state == JobState.SUCCEEDED:
        job.progress = 100
    # The stage names where the job ended, not the last step it reported: a failed
    # scoring job read "scoring about 1 rows" beside its error.
    job.stage = FINAL_STAGE[state]
    if message:
        job.message = message
    session.flush()
    repo.add_audit_event(
        session, f"job_{state}", "job", job_id, kind=job.kind, reason=job.reason,
        result=result, error=error, model=job.model,
    )  # fmt: skip
    log.info("job finished id=%d state=%s", job_id, state)
    return job


def request_cancel(session: Session, job_id: int) -> Job:
    """Cancel a queued job now; ask a running one to stop at its next stage.

    Raises
    ------
    ConflictError
        The job has already finished.
    """
    job = get_job(session, job_id)
    if job.state in FINISHED:
        raise ConflictError(f"job {job_id} already {job.state}", job_id=job_id)
    job.cancel_requested = True
    if job.state == JobState.QUEUED:
        return finish_job(session, job_id, JobState.CANCELLED, message="cancelled")
    session.flush()
    return job


def progress_reporter(
    session_factory: sessionmaker[Session], job_id: int, every_seconds: float = 0.25
) -> ProgressCallback:
    """A callback that records progress in its own short transaction, at most every
    `every_seconds` (reports in between are skipped), and checks for cancellation on
    every call.

    It raises `JobCancelledError` when the job was cancelled, so running work stops
    at its next stage or chunk.
    """
    last = [0.0]

    def report(percent: int, stage: str) -> None:
        now = time.monotonic()
        with session_scope(session_factory) as session:
            if now - last[0] >= every_seconds:  # writes are throttled, checks are not
                last[0] = now
                session.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(progress=max(0, min(percent, 99)), stage=stage[:100],
                            heartbeat_at=utcnow())
                )  # fmt: skip
            cancelled = session.scalar(
                select(Job.cancel_requested).where(Job.id == job_id)
            )
        if cancelled:
            raise JobCancelledError(f"job {job_id} was cancelled", job_id=job_id)

    return report


def run_job(
    session_factory: sessionmaker[Session],
    job_id: int,
    task_id: str | None,
    work: Callable[[Job, ProgressCallback], dict[str, Any]],
    *,
    timeout_errors: tuple[type[BaseException], ...] = (),
    heartbeat_seconds: float = 10.0,
    stall_seconds: float = 60.0,
    worker: str | None = None,
    kind: str | None = None,
) -> dict[str, Any] | None:
    """Run `work` for a job and record how it ended. Safe to call twice, from any
    number of workers: only the one that claims the job runs it.

    Returns the result, or None when the job had nothing to do. A `DependencyError`
    puts the job back to queued and propagates, so the caller can retry.
    """
    with session_scope(session_factory) as session:
        job = start_job(
            session, job_id, task_id, worker=worker, stall_seconds=stall_seconds,
            kind=kind,
        )  # fmt: skip
        if job is None:
            return None
        session.expunge(job)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    state = JobState.FAILED
    beating = _Heartbeat(session_factory, job_id, heartbeat_seconds)
    try:
        result = work(job, progress_reporter(session_factory, job_id))
        state, message = JobState.SUCCEEDED, result.get("message")
    except JobCancelledError:
        state, message = JobState.CANCELLED, "cancelled while running"
    except timeout_errors as exc:
        error, message = _error(exc, "timed_out"), "timed out"
    except DependencyError:
        with session_scope(session_factory) as session:
            get_job(session, job_id).state = JobState.QUEUED  # retried by the caller
        raise
    except AppError as exc:
        error, message = _error(exc), exc.message
    except Exception as exc:
        log.exception("job %d failed", job_id)
        error, message = _error(exc), str(exc)
    finally:
        beating.stop()
    with session_scope(session_factory) as session:
        finish_job(session, job_id, state, result=result, error=error, message=message)
    return result


class _Heartbeat:
    """Records every few seconds that this job's worker is alive, even while a long
    fit reports no progress; a job whose heartbeat stops is requeued by beat."""

    def __init__(
        self, session_factory: sessionmaker[Session], job_id: int, seconds: float
    ) -> None:
        self.session_factory, self.job_id, self.seconds = (
            session_factory,
            job_id,
            seconds,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"job-{job_id}-heartbeat", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                with session_scope(self.session_factory) as session:
                    session.execute(
                        update(Job).where(Job.id == self.job_id)
                        .values(heartbeat_at=utcnow())
                    )  # fmt: skip
            except SQLAlchemyError as exc:  # a missed beat; the next one may land
                log.warning("heartbeat of job %d failed: %s", self.job_id, exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def requeue_stalled_jobs(
    session_factory: sessionmaker[Session],
    stall_seconds: int,
    enqueue: Callable[[Job], str],
) -> list[int]:
    """Queue again every running job whose worker stopped beating (it died).

    The job keeps its id and attempts; registration keyed by the job keeps a second
    run from adding a second version.
    """
    cutoff = utcnow() - timedelta(seconds=stall_seconds)
    with session_scope(session_factory) as session:
        stalled = session.scalars(
            select(Job).where(
                Job.state == JobState.RUNNING,
                Job.heartbeat_at.is_not(None),
                Job.heartbeat_at < cutoff,
            )
        ).all()
        for job in stalled:
            job.state, job.stage = JobState.QUEUED, "requeued: its worker stopped"
        session.flush()
        return _publish_again(session, stalled, enqueue, "job_requeued",
                              "its worker stopped")  # fmt: skip


def republish_lost_jobs(
    session_factory: sessionmaker[Session],
    after_seconds: int,
    enqueue: Callable[[Job], str],
) -> list[int]:
    """Publish again the task of every job still queued `after_seconds` after it was
    last published.

    Redis without persistence loses its messages when it restarts; the job row would
    stay queued for ever (and a queued retrain blocks every other). If the message
    was only slow, not lost, the second delivery finds the job claimed or finished
    and does nothing.
    """
    cutoff = utcnow() - timedelta(seconds=after_seconds)
    with session_scope(session_factory) as session:
        waiting = session.scalars(
            select(Job).where(
                Job.state == JobState.QUEUED,
                Job.cancel_requested.is_(False),
                func.coalesce(Job.published_at, Job.created_at) < cutoff,
            )
        ).all()
        why = f"still queued {after_seconds} s after publication"
        return _publish_again(session, waiting, enqueue, "job_republished", why)


def _publish_again(
    session: Session,
    queued: Sequence[Job],
    enqueue: Callable[[Job], str],
    action: str,
    why: str,
) -> list[int]:
    """Hand each job's task to the queue again and record it (audit and log)."""
    for job in queued:
        job.task_id, job.published_at = enqueue(job), utcnow()
        repo.add_audit_event(session, action, "job", job.id, attempts=job.attempts,
                             task_id=job.task_id)  # fmt: skip
        log.warning("job %d published again: %s", job.id, why)
    return [job.id for job in queued]


def _error(exc: BaseException, kind: str | None = None) -> dict[str, Any]:
    details = exc.details if isinstance(exc, AppError) else {}
    return {
        "type": kind or type(exc).__name__,
        "message": exc.message if isinstance(exc, AppError) else str(exc),
        "details": details,
    }
