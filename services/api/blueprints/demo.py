"""Demo controls, served only in demo mode (MODELOPS_DEMO)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from common import demo
from common.errors import NotFoundError
from services.api import schemas as s
from services.api.auth import require_api_key
from services.api.database import get_session
from services.api.declare import api
from services.api.job_submission import submit
from services.api.requests import parse_body
from services.api.schemas import DemoDriftRequest

bp = Blueprint("demo", __name__)


@bp.before_request
def _demo_mode_only() -> None:
    """The demo routes exist only in demo mode: a reset clears the deployment."""
    if not current_app.extensions["settings"].demo_on:
        raise NotFoundError(
            "the demo routes exist only in demo mode (MODELOPS_DEMO=on; `modelops up` "
            "turns it on by default)",
            setting="MODELOPS_DEMO",
        )


@bp.post("/demo/reset")
@require_api_key
@api("Queue a reset of the demo model to a clean state", s.JobAcceptedOut,
     ok_status=202, errors=(409, 503), tags=("demo",))  # fmt: skip
def reset() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Queue a reset to a clean demo state; API processes swap to the new model."""
    model = current_app.extensions["settings"].demo_model
    return submit("demo_reset", {}, "demo reset via API", model=model)


@bp.post("/demo/drift")
@require_api_key
@api("Switch demo traffic to a drift scenario", s.DemoScenarioOut,
     body=DemoDriftRequest, body_required=False, errors=(400, 413, 415),
     tags=("demo",))  # fmt: skip
def drift() -> dict[str, str]:
    """Switch demo traffic (`modelops simulate` without --scenario) to a scenario."""
    body = parse_body(DemoDriftRequest, optional=True)
    session = get_session()
    scenario = demo.set_demo_scenario(session, body.scenario, actor="api")
    session.commit()
    return {"scenario": scenario}


@bp.get("/demo/scenario")
@api("The scenario demo traffic follows", s.DemoScenarioOut, tags=("demo",))
def scenario() -> dict[str, str]:
    """The scenario demo traffic follows now (baseline after a reset)."""
    return {"scenario": demo.current_demo_scenario(get_session())}
