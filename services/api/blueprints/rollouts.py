"""Rollouts over HTTP (DESIGN.md section 8): start one, read it with its live
comparison, promote or abort it by hand, and the history of past ones."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from common.clock import utcnow
from common.errors import ConflictError
from common.models import catalog
from common.rollouts import lifecycle
from common.rollouts.comparison import compare
from common.rollouts.criteria import Criteria
from common.rollouts.decisions import judge
from services.api import schemas as s
from services.api.auth import require_api_key
from services.api.database import get_session
from services.api.declare import api
from services.api.models_scope import model_settings
from services.api.requests import parse_body

bp = Blueprint("rollouts", __name__)
ACTOR = "api"
BASE = "/models/<model_name:name>/rollouts"
DECIDE = {"ok": (s.RolloutOut,), "body": s.ActionRequest, "body_required": False,
          "errors": (400, 404, 409, 413, 415), "tags": ("rollouts",)}  # fmt: skip


@bp.post(BASE)
@require_api_key
@api("Start a rollout of a version beside the champion", s.RolloutOut,
     ok_status=201, body=s.RolloutRequest, errors=(400, 404, 409, 413, 415, 503),
     tags=("rollouts",))  # fmt: skip
def start(name: str) -> tuple[dict[str, Any], int]:
    """Shadow, canary or A/B: every API process follows within its poll interval."""
    body = parse_body(s.RolloutRequest)
    session = get_session()
    criteria = body.criteria.model_dump(exclude_none=True) if body.criteria else None
    rollout = lifecycle.start_rollout(
        session, model_settings(name), version=body.version, mode=body.mode,
        share=body.share, criteria=criteria, actor=ACTOR,
    )  # fmt: skip
    session.commit()
    return lifecycle.rollout_out(rollout), 201


@bp.get(f"{BASE}/current")
@api("The running rollout with its live comparison and verdict",
     s.RolloutCurrentOut, errors=(404,), tags=("rollouts",))  # fmt: skip
def current(name: str) -> dict[str, Any]:
    session = get_session()
    model_settings(name)
    rollout = lifecycle.get_running(session, name)
    task = catalog.get_model(session, name).task
    now = utcnow()
    comparison = compare(session, rollout, task, now)
    verdict = judge(rollout, comparison, Criteria(**rollout.criteria), now)
    return {**lifecycle.rollout_out(rollout), "comparison": comparison,
            "verdict": {"decision": verdict.decision, "criterion": verdict.criterion,
                        "reason": verdict.reason}}  # fmt: skip


@bp.post(f"{BASE}/current/promote")
@require_api_key
@api("Promote the running rollout's challenger", **DECIDE)
def promote(name: str) -> dict[str, Any]:
    return _decide(name, "promote", "promoted by hand")


@bp.post(f"{BASE}/current/abort")
@require_api_key
@api("Abort the running rollout (the champion alone serves)", **DECIDE)
def abort(name: str) -> dict[str, Any]:
    return _decide(name, "abort", "aborted by hand")


@bp.get(BASE)
@api("A model's rollouts, newest first, with outcome and evidence", s.RolloutsOut,
     errors=(404,), tags=("rollouts",))  # fmt: skip
def history(name: str) -> dict[str, Any]:
    model_settings(name)
    rows = lifecycle.history(get_session(), name)
    return {"model": name, "rollouts": [lifecycle.rollout_out(r) for r in rows]}


def _decide(name: str, action: str, default_reason: str) -> dict[str, Any]:
    body = parse_body(s.ActionRequest, optional=True)
    session = get_session()
    scoped = model_settings(name)
    reason = body.reason or default_reason
    try:
        decided = lifecycle.decide_by_hand(
            session, scoped, action, actor=ACTOR, reason=reason
        )
    except ConflictError:
        session.commit()  # the champion changed under it: it is ended, not promoted
        raise
    session.commit()
    return lifecycle.rollout_out(decided)
