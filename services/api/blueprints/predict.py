"""`POST /predict`: one row (`features`) or a batch (`instances`)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app

from services.api.auth import require_predict_key
from services.api.requests import parse_body
from services.api.schemas import PredictRequest

bp = Blueprint("predict", __name__)


@bp.post("/predict")
@require_predict_key
def predict() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Validate against the champion's schema and answer with its prediction."""
    started = time.perf_counter()
    body = parse_body(PredictRequest)
    answer, version = current_app.extensions["predictor"].predict(body, started)
    return answer, 200, {"X-Model-Version": str(version)}
