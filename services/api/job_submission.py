"""The one way the API starts a job: commit its row, publish its task, answer 202."""

from __future__ import annotations

from typing import Any

from flask import current_app

from common.jobs import tracker
from common.queue import TASK_OF_KIND, enqueue
from services.api import schemas
from services.api.database import get_session


def submit(
    kind: str, params: dict[str, Any], reason: str, model: str | None = None
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """202 with `job_id`, `status_url`, the job, and a `Location` header.

    409 while a single-flight job of this kind is active (for the model); 503 (job
    marked failed) when Redis does not take it.
    """
    celery = current_app.extensions["celery"]
    job = tracker.submit_job(
        get_session(), kind, params, reason,
        lambda job_id: enqueue(celery, TASK_OF_KIND[kind], job_id), model=model,
    )  # fmt: skip
    out = schemas.job_out(job, current_app.extensions["flower_url"])
    body = {"job_id": job.id, "status_url": out["status_url"], "job": out}
    return body, 202, {"Location": out["status_url"]}
