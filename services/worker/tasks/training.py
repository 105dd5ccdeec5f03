"""Retraining tasks."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from common import task_names as names
from common.errors import DependencyError
from common.jobs import retraining, tracker
from services.worker.celery_app import app, settings
from services.worker.database import session_factory

log = logging.getLogger(__name__)


@app.task(
    name=names.RETRAIN_MODEL, bind=True, acks_late=True,
    autoretry_for=(DependencyError,), retry_backoff=True, max_retries=5,
)  # fmt: skip
def retrain_model(self: Task, job_id: int) -> dict[str, Any] | None:
    """Run one retraining job. A second delivery is harmless: only one claims it."""
    log.info("retrain start job_id=%s retry=%s", job_id, self.request.retries)
    return tracker.run_job(
        session_factory(settings), job_id, self.request.id,
        lambda job, progress: retraining.run_retrain(
            session_factory(settings), settings, job, progress
        ),
        timeout_errors=(SoftTimeLimitExceeded,),
        heartbeat_seconds=settings.job_heartbeat_seconds,
        stall_seconds=settings.job_stall_seconds, worker=self.request.hostname,
        kind="retrain",
    )  # fmt: skip
