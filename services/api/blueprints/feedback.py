"""`POST /feedback`: true labels for answered predictions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from common.monitoring import feedback
from services.api.auth import require_predict_key
from services.api.database import get_session
from services.api.requests import parse_body
from services.api.schemas import FeedbackRequest

bp = Blueprint("feedback", __name__)


@bp.post("/feedback")
@require_predict_key
def record_feedback() -> tuple[dict[str, Any], int]:
    """Store labels by prediction id; repeating the call changes nothing."""
    body = parse_body(FeedbackRequest)
    loaded = current_app.extensions["model_cache"].current
    session = get_session()
    outcomes = feedback.record_feedback(
        session,
        [(item.prediction_id, item.label) for item in body.items()],
        default_classes=loaded.classes if loaded else [],
    )
    session.commit()
    return {"results": [o.to_dict() for o in outcomes]}, 200
