"""Demo controls."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from common import demo, jobs
from common import task_names as names
from common.queue import enqueue
from services.api import schemas
from services.api.auth import require_api_key
from services.api.database import get_session
from services.api.requests import parse_body
from services.api.schemas import DemoDriftRequest

bp = Blueprint("demo", __name__)


@bp.post("/demo/reset")
@require_api_key
def reset() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Queue a reset to a clean demo state; API processes swap to the new model."""
    job = jobs.submit_job(
        get_session(), "demo_reset", {}, "demo reset via API",
        lambda job_id: enqueue(current_app.extensions["celery"], names.RESET_DEMO,
                               job_id),
    )  # fmt: skip
    out = schemas.job_out(job, current_app.extensions["flower_url"])
    return (
        {"job_id": job.id, "status_url": out["status_url"], "job": out},
        202,
        {"Location": out["status_url"]},
    )


@bp.post("/demo/drift")
@require_api_key
def drift() -> dict[str, str]:
    """Switch demo traffic (`modelops simulate` without --scenario) to a scenario."""
    body = parse_body(DemoDriftRequest, optional=True)
    session = get_session()
    scenario = demo.set_demo_scenario(session, body.scenario, actor="api")
    session.commit()
    return {"scenario": scenario}


@bp.get("/demo/scenario")
def scenario() -> dict[str, str]:
    """The scenario demo traffic follows now (baseline after a reset)."""
    return {"scenario": demo.current_demo_scenario(get_session())}
