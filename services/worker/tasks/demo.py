"""The demo reset task."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from common import demo
from common import task_names as names
from common.errors import DependencyError
from common.jobs import tracker
from services.worker.celery_app import app, settings
from services.worker.database import session_factory

log = logging.getLogger(__name__)


@app.task(
    name=names.RESET_DEMO, bind=True, acks_late=True,
    autoretry_for=(DependencyError,), retry_backoff=True, max_retries=5,
)  # fmt: skip
def reset_demo(self: Task, job_id: int) -> dict[str, Any] | None:
    """Clear the demo data and serve a fresh demo model. A done job is a no-op."""
    return tracker.run_job(
        session_factory(settings), job_id, self.request.id,
        lambda job, progress: demo.reset_demo(session_factory(settings), settings, job,
                                              progress),
        heartbeat_seconds=settings.job_heartbeat_seconds,
        stall_seconds=settings.job_stall_seconds, worker=self.request.hostname,
        kind="demo_reset",
    )  # fmt: skip
