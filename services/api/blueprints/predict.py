"""`POST /predict`: one row (`features`) or a batch (`instances`)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, g

from services.api.auth import require_predict_key
from services.api.requests import parse_body
from services.api.schemas import PredictRequest

bp = Blueprint("predict", __name__)


@bp.after_request
def _log_failure(response: Response) -> Response:
    """A refused or failed /predict is logged too, so the error rate is real."""
    if response.status_code >= 400:
        started = g.get("request_started", time.perf_counter())
        current_app.extensions["predictor"].log_failure(
            response.status_code, (time.perf_counter() - started) * 1000
        )
    return response


@bp.post("/predict")
@require_predict_key
def predict() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Validate against the champion's schema and answer with its prediction."""
    started = g.request_started
    body = parse_body(PredictRequest)
    answer, version = current_app.extensions["predictor"].predict(body, started)
    return answer, 200, {"X-Model-Version": str(version)}
