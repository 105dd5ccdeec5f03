"""`POST /feedback`: true labels for answered predictions."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from common.monitoring import feedback
from services.api.auth import require_predict_key
from services.api.database import get_session
from services.api.declare import api
from services.api.requests import parse_body
from services.api.schemas import FeedbackOut, FeedbackRequest

bp = Blueprint("feedback", __name__)


@bp.post("/feedback")
@require_predict_key
@api("Record true labels by prediction id", FeedbackOut, body=FeedbackRequest,
     errors=(400, 409, 413, 415), tags=("predict",))  # fmt: skip
def record_feedback() -> tuple[dict[str, Any], int]:
    """Store labels by prediction id; repeating the call changes nothing."""
    body = parse_body(FeedbackRequest)
    session = get_session()
    outcomes = feedback.record_feedback(
        session, [(item.prediction_id, item.label) for item in body.items()]
    )
    session.commit()
    return {"results": [o.to_dict() for o in outcomes]}, 200
