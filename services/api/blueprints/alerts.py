"""Alerts: list and acknowledge."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from common.errors import InvalidInputError
from common.monitoring import alerts
from services.api import schemas as s
from services.api.auth import require_api_key
from services.api.database import get_session
from services.api.declare import api
from services.api.models_scope import model_filter

bp = Blueprint("alerts", __name__)
STATES = ("open", "acknowledged", "resolved")


@bp.get("/alerts")
@api("Alerts with their deliveries", s.AlertListOut, errors=(400, 404),
     tags=("monitoring",),
     query=(("state", "alert_state"), ("model", "model")))  # fmt: skip
def list_alerts() -> dict[str, Any]:
    """Alerts newest first, optionally by `state`, with their delivery attempts."""
    state = request.args.get("state")
    if state is not None and state not in STATES:
        raise InvalidInputError("state must be open, acknowledged or resolved",
                                problems=[{"field": "state", "code": "enum",
                                           "message": state[:50]}])  # fmt: skip
    session = get_session()
    rows = alerts.list_alerts(session, state, limit=500, model=model_filter())
    deliveries = alerts.deliveries_of(session, [a.id for a in rows])
    return {"alerts": [alerts.alert_out(a, deliveries[a.id]) for a in rows]}


@bp.post("/alerts/<int(max=2147483647):alert_id>/ack")
@require_api_key
@api("Acknowledge an alert", s.AlertOut, errors=(404, 409), tags=("monitoring",))
def acknowledge(alert_id: int) -> dict[str, Any]:
    """Mark an alert as seen; it still resolves by itself when the condition clears."""
    session = get_session()
    alert = alerts.acknowledge(session, alert_id, actor="api")
    session.commit()
    return alerts.alert_out(alert, alerts.deliveries_of(session, [alert.id])[alert.id])
