"""`POST /predict` (the default model) and `POST /models/<name>/predict`: one row
(`features`) or a batch (`instances`)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response

from services.api.auth import require_predict_key
from services.api.context import request_globals, this_app, this_request
from services.api.declare import api
from services.api.models_scope import default_model
from services.api.requests import parse_body
from services.api.schemas import PredictionOut, PredictionsOut, PredictRequest

bp = Blueprint("predict", __name__)


@bp.after_request
def _log_failure(response: Response) -> Response:
    """A refused or failed prediction of a known model is logged too, so its error
    rate is real."""
    g = request_globals()
    name = g.get("model_name")
    if response.status_code >= 400 and name and response.status_code != 404:
        started = g.get("request_started", time.perf_counter())
        this_app().extensions["predictor"].log_failure(
            name, response.status_code, (time.perf_counter() - started) * 1000
        )
    return response


PREDICT = {
    "body": PredictRequest, "errors": (400, 404, 408, 413, 415, 422, 503),
    "tags": ("predict",),
}  # fmt: skip


@bp.post("/predict")
@require_predict_key
@api("Predict one row or a batch with the default model",
     PredictionOut, PredictionsOut, **PREDICT)  # fmt: skip
def predict() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Validate against the default model champion's schema and answer."""
    return _predict(default_model())


@bp.post("/models/<model_name:name>/predict")
@require_predict_key
@api("Predict one row or a batch with a model", PredictionOut, PredictionsOut,
     **PREDICT)  # fmt: skip
def predict_model(name: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Validate against the model champion's schema and answer."""
    return _predict(name)


def _predict(name: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    g = request_globals()
    g.model_name = name
    body = parse_body(PredictRequest)
    key = this_request().headers.get("X-Routing-Key") or None
    answer, version, arm = (
        this_app().extensions["predictor"].predict(name, body, g.request_started, key)
    )
    return answer, 200, {"X-Model-Version": str(version), "X-Model-Name": name,
                         "X-Model-Arm": arm}  # fmt: skip
