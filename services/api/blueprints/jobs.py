"""Jobs: batch scoring, list, inspect, results, cancel."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request, send_file

from common.errors import InvalidInputError
from common.jobs import scoring, tracker
from common.models import registry
from services.api import schemas
from services.api import schemas as s
from services.api.auth import require_api_key
from services.api.database import get_session
from services.api.declare import api
from services.api.job_submission import submit
from services.api.models_scope import model_filter, model_settings
from services.api.uploads import read_batch_source

bp = Blueprint("jobs", __name__)
MAX_PAGE_SIZE = 200


def _flower() -> str:
    flower: str = current_app.extensions["flower_url"]
    return flower


def _positive_int(name: str, default: int, most: int) -> int:
    raw = request.args.get(name, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise InvalidInputError(
            f"{name} must be an integer from 1 to {most}",
            problems=[{"field": name, "code": "out_of_range", "message": raw[:50]}],
        )
    return int(raw)


@bp.get("/jobs")
@api("Jobs, newest first", s.JobListOut, errors=(400, 404), tags=("jobs",),
     query=(("kind", "string"), ("state", "job_state"), ("model", "model"),
            ("page", "integer"), ("page_size", "integer")))  # fmt: skip
def list_jobs() -> dict[str, Any]:
    """Jobs newest first; filter by `kind` and `state`, page with `page`/`page_size`."""
    settings = current_app.extensions["settings"]
    state = request.args.get("state")
    if state and state not in {s.value for s in tracker.JobState}:
        raise InvalidInputError(f"unknown state {state[:50]!r}",
                                problems=[{"field": "state", "code": "enum",
                                           "message": "queued, running, succeeded, "
                                           "failed or cancelled"}])  # fmt: skip
    page = _positive_int("page", 1, 10**6)
    size = _positive_int("page_size", settings.jobs_page_size, MAX_PAGE_SIZE)
    rows, total = tracker.list_jobs(
        get_session(), kind=request.args.get("kind"), state=state, page=page,
        page_size=size, model=model_filter(),
    )  # fmt: skip
    return {"jobs": [schemas.job_out(j, _flower()) for j in rows], "total": total,
            "page": page, "page_size": size}  # fmt: skip


@bp.post("/jobs/batch-score")
@require_api_key
@api("Queue batch scoring of a CSV", s.JobAcceptedOut, ok_status=202,
     body=s.BatchScoreRequest, upload=s.BatchScoreUpload,
     errors=(400, 404, 409, 413, 415, 503), tags=("jobs",),
     query=(("model", "model"),))  # fmt: skip
def batch_score() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Queue scoring of an uploaded CSV or a named dataset with the champion."""
    scoped = model_settings(request.args.get("model"))
    registry.get_champion(get_session(), scoped)  # 503 before anything is stored
    params, reason = read_batch_source(scoped)
    return submit("batch_score", params, reason, model=scoped.model_name)


@bp.get("/jobs/<int(max=2147483647):job_id>/result")
@require_api_key
@api("The scored CSV of a batch job", s.JobOut, ok_media="text/csv",
     errors=(404, 409), tags=("jobs",))  # fmt: skip
def job_result(job_id: int) -> Response:
    """The scored CSV of a finished batch-scoring job: the user's rows, so always
    behind the key (job ids are sequential: anyone could count through them)."""
    job = tracker.get_job(get_session(), job_id)
    path = scoring.get_result_file(current_app.extensions["settings"], job)
    return send_file(path, mimetype="text/csv", as_attachment=True,
                     download_name=f"job-{job_id}-scores.csv")  # fmt: skip


@bp.get("/jobs/<int(max=2147483647):job_id>")
@api("One job", s.JobOut, errors=(404,), tags=("jobs",))
def get_job(job_id: int) -> dict[str, Any]:
    """One job with its progress, stage, result or error."""
    return schemas.job_out(tracker.get_job(get_session(), job_id), _flower())


@bp.post("/jobs/<int(max=2147483647):job_id>/cancel")
@require_api_key
@api("Cancel a job", s.JobOut, errors=(404, 409), tags=("jobs",))
def cancel_job(job_id: int) -> dict[str, Any]:
    """Cancel a queued job now; a running one stops at its next stage."""
    session = get_session()
    job = tracker.request_cancel(session, job_id)
    session.commit()
    return schemas.job_out(job, _flower())
