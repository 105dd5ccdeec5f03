"""Housekeeping run by beat: requeue jobs whose worker died, remove old files and
delete the rows that aged out."""

from __future__ import annotations

import logging
import time

from common import task_names as names
from common.clock import utcnow
from common.jobs import scoring, tracker
from common.queue import TASK_OF_KIND, enqueue
from common.storage import retention
from common.storage.tables import Job
from services.worker.celery_app import app, settings
from services.worker.database import session_factory

log = logging.getLogger(__name__)


@app.task(name=names.REQUEUE_STALLED_JOBS)
def requeue_stalled_jobs() -> list[int]:
    """Queue again the running jobs whose heartbeat stopped (their worker died), and
    the queued ones whose message Redis may have lost."""

    def publish(job: Job) -> str:
        return enqueue(app, TASK_OF_KIND[job.kind], job.id)

    factory = session_factory(settings)
    stalled = tracker.requeue_stalled_jobs(factory, settings.job_stall_seconds, publish)
    lost = tracker.republish_lost_jobs(factory, settings.job_republish_seconds, publish)
    return stalled + lost


@app.task(name=names.PRUNE_OLD_ROWS)
def prune_old_rows() -> dict[str, int]:
    """Delete log rows, rollups, reports, jobs and alerts past their retention."""
    return retention.prune(session_factory(settings), settings, utcnow())


@app.task(name=names.REMOVE_OLD_FILES)
def remove_old_files() -> int:
    """Delete uploads and scoring outputs past their retention."""
    return scoring.remove_old_files(settings, time.time())
