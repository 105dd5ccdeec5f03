"""The OpenAPI 3.1 document, generated from the pydantic schemas that validate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common.config import Settings
from common.models.schemas import FeatureSpec
from common.models.validation import largest_plausible
from services.api import schemas as s
from services.api.auth import read_needs_key

REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    ok: tuple[type[BaseModel], ...]
    ok_status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    # "api_key" always; "predict" with predict_auth; None: a read, keyed with
    # read_auth or off loopback (the probes only with probes_auth)
    auth: str | None = None
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)
    other: dict[int, type[BaseModel]] = field(default_factory=dict)  # non-error bodies
    query: tuple[tuple[str, str], ...] = ()  # (name, JSON type) of query parameters
    upload: type[BaseModel] | None = None  # also accepts this as multipart/form-data
    ok_media: str = "application/json"


MAX_ID = 2**31 - 1  # ids and versions are 32-bit integers in every database
PATH_PARAMS = {
    name: {"name": name, "in": "path", "required": True,
           "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID}}
    for name in ("version", "job_id", "alert_id")
}  # fmt: skip

OPERATIONS = (
    Operation(
        "post",
        "/predict",
        "Predict one row or a batch",
        (s.PredictionOut, s.PredictionsOut),
        body=s.PredictRequest,
        auth="predict",
        errors=(400, 408, 413, 415, 422, 503),
        tags=("predict",),
    ),
    Operation(
        "post",
        "/feedback",
        "Record true labels by prediction id",
        (s.FeedbackOut,),
        body=s.FeedbackRequest,
        auth="predict",
        errors=(400, 409, 413, 415),
        tags=("predict",),
    ),
    Operation(
        "get",
        "/model/status",
        "The serving model",
        (s.ModelStatusOut,),
        errors=(503,),
        tags=("models",),
    ),
    Operation(
        "post",
        "/model/rollback",
        "Serve the previous champion again",
        (s.ChampionOut,),
        body=s.ActionRequest,
        body_required=False,
        auth="api_key",
        errors=(400, 409, 413, 415, 503),
        tags=("models",),
    ),
    Operation(
        "get", "/models", "Every model version", (s.ModelListOut,), tags=("models",)
    ),
    Operation(
        "get",
        "/models/{version}",
        "One model version",
        (s.ModelVersionOut,),
        errors=(404,),
        tags=("models",),
    ),
    Operation(
        "post",
        "/models/{version}/promote",
        "Make a version the champion",
        (s.ChampionOut,),
        body=s.ActionRequest,
        body_required=False,
        auth="api_key",
        errors=(400, 404, 409, 413, 415),
        tags=("models",),
    ),
    Operation("get", "/livez", "The process answers", (s.LiveOut,), tags=("health",)),
    Operation(
        "get",
        "/readyz",
        "Ready to serve",
        (s.ReadyOut,),
        other={503: s.ReadyOut},
        tags=("health",),
    ),
    Operation(
        "post",
        "/model/retrain",
        "Queue a retraining job",
        (s.JobAcceptedOut,),
        ok_status=202,
        body=s.RetrainRequest,
        body_required=False,
        auth="api_key",
        errors=(400, 404, 409, 413, 415, 422, 503),
        tags=("jobs",),
    ),
    Operation("get", "/jobs", "Jobs, newest first", (s.JobListOut,), errors=(400,),
              tags=("jobs",), query=(("kind", "string"), ("state", "job_state"),
                                     ("page", "integer"), ("page_size", "integer"))),
    Operation("get", "/metrics", "Live metrics of the current window", (s.MetricsOut,),
              errors=(400, 404), tags=("monitoring",),
              query=(("window_minutes", "number"), ("model_version", "integer"))),
    Operation("get", "/metrics/history", "Stored metric snapshots",
              (s.MetricsHistoryOut,), errors=(400,), tags=("monitoring",),
              query=(("hours", "number"),)),
    Operation("get", "/metrics/prometheus", "Prometheus text format", (s.LiveOut,),
              ok_media="text/plain", tags=("monitoring",)),
    Operation("get", "/retraining", "The retraining policy's last decision",
              (s.RetrainingOut,), tags=("monitoring",)),
    Operation("get", "/drift", "The latest drift report", (s.DriftOut,),
              errors=(404,), tags=("monitoring",)),
    Operation("get", "/drift/history", "Recent drift checks", (s.DriftHistoryOut,),
              errors=(400,), tags=("monitoring",), query=(("limit", "number"),)),
    Operation("get", "/alerts", "Alerts with their deliveries", (s.AlertListOut,),
              errors=(400,), tags=("monitoring",), query=(("state", "alert_state"),)),
    Operation("post", "/alerts/{alert_id}/ack", "Acknowledge an alert", (s.AlertOut,),
              auth="api_key", errors=(404, 409), tags=("monitoring",)),
    Operation("post", "/demo/reset", "Queue a reset to a clean demo state",
              (s.JobAcceptedOut,), ok_status=202, auth="api_key", errors=(409, 503),
              tags=("demo",)),
    Operation("post", "/demo/drift", "Switch demo traffic to a drift scenario",
              (s.DemoScenarioOut,), body=s.DemoDriftRequest, body_required=False,
              auth="api_key", errors=(400, 413, 415), tags=("demo",)),
    Operation("get", "/demo/scenario", "The scenario demo traffic follows",
              (s.DemoScenarioOut,), tags=("demo",)),
    Operation("get", "/jobs/{job_id}", "One job", (s.JobOut,), errors=(404,),
              tags=("jobs",)),
    Operation("post", "/jobs/batch-score", "Queue batch scoring of a CSV",
              (s.JobAcceptedOut,), ok_status=202, body=s.BatchScoreRequest,
              upload=s.BatchScoreUpload, auth="api_key",
              errors=(400, 404, 409, 413, 415, 503), tags=("jobs",)),
    Operation("get", "/jobs/{job_id}/result", "The scored CSV of a batch job",
              (s.JobOut,), ok_media="text/csv", auth="api_key", errors=(404, 409),
              tags=("jobs",)),
    Operation("post", "/jobs/{job_id}/cancel", "Cancel a job", (s.JobOut,),
              auth="api_key", errors=(404, 409), tags=("jobs",)),
)  # fmt: skip

STATUS_TEXT = {
    400: "Invalid input; `details.problems` lists every problem with its field",
    401: "Missing or wrong API key",
    404: "Unknown resource",
    408: "The prediction exceeded its time budget",
    409: "The current state forbids it",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Valid input the model could not score",
    500: "Internal error",
    503: "Not ready (no model, database or broker); retry after `Retry-After`",
}


def build_openapi(
    settings: Settings,
    input_schema: list[FeatureSpec] | None = None,
    classes: list[Any] | None = None,
) -> dict[str, Any]:
    """Return the document for this configuration (batch limit, predict auth) and,
    when a model is loaded, its exact features and classes."""
    models = (
        {s.ErrorOut}
        | {m for op in OPERATIONS for m in op.ok}
        | {op.body for op in OPERATIONS if op.body}
    )
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
        ref_template=REF,
    )
    components = defs.get("$defs", {})
    if input_schema is not None:
        components["PredictRequest"] = predict_request_schema(
            input_schema, settings.max_batch_instances
        )
    if classes is not None:
        label = components["FeedbackItem"]["properties"]["label"]
        label.clear()
        label["enum"] = sorted({*map(str, classes), *classes}, key=str)
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        if "demo" in op.tags and not settings.demo_on:
            continue  # the demo routes exist only in demo mode
        paths.setdefault(op.path, {})[op.method] = _operation(op, settings)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ModelOps API",
            "version": "1",
            "description": "Serve, monitor and retrain scikit-learn models. Every "
            "error has the shape of `ErrorOut`.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


def needs_key(op: Operation, settings: Settings) -> bool:
    """Whether this server refuses the operation without the API key."""
    if op.auth is None:
        return read_needs_key(settings, op.path)
    return op.auth == "api_key" or settings.predict_auth


def _operation(op: Operation, settings: Settings) -> dict[str, Any]:
    errors = set(op.errors) | {500}
    secured = needs_key(op, settings)
    if secured:
        errors.add(401)
    ok_schema = (
        {"type": "string"} if op.ok_media != "application/json" else _one_of(op.ok)
    )
    responses: dict[str, Any] = {
        str(op.ok_status): {
            "description": "OK",
            "content": {op.ok_media: {"schema": ok_schema}},
        }
    }
    for status in sorted(errors | set(op.other)):
        body = op.other.get(status, s.ErrorOut)
        responses[str(status)] = {
            "description": STATUS_TEXT[status],
            "content": {"application/json": {"schema": {"$ref": _ref(body)}}},
        }
    operation: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_')}".replace(
            "{", ""
        ).replace("}", ""),
        "tags": list(op.tags),
        "responses": responses,
    }
    parameters = [p for name, p in PATH_PARAMS.items() if f"{{{name}}}" in op.path]
    parameters += [
        {
            "name": name,
            "in": "query",
            "required": False,
            "schema": _query_schema(name, kind),
        }
        for name, kind in op.query
    ]
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        content = {"application/json": {"schema": {"$ref": _ref(op.body)}}}
        if op.upload is not None:
            content["multipart/form-data"] = {"schema": {"$ref": _ref(op.upload)}}
        operation["requestBody"] = {"required": op.body_required, "content": content}
    if secured:
        operation["security"] = [{"bearer": []}, {"apiKey": []}]
    return operation


def _query_schema(name: str, kind: str) -> dict[str, Any]:
    if kind == "job_state":
        return {
            "type": "string",
            "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
        }
    if kind == "alert_state":
        return {"type": "string", "enum": ["open", "acknowledged", "resolved"]}
    if name == "window_minutes":
        return {"type": "number", "exclusiveMinimum": 0, "maximum": 7 * 24 * 60}
    if name == "limit":
        return {"type": "number", "exclusiveMinimum": 0, "maximum": 1000}
    if name == "hours":
        return {"type": "number", "exclusiveMinimum": 0, "maximum": 24 * 90}
    if kind == "integer":
        return {
            "type": "integer",
            "minimum": 1,
            "maximum": 200 if name == "page_size" else 10**6,
        }
    return {"type": kind}  # fmt: skip


def _one_of(models: tuple[type[BaseModel], ...]) -> dict[str, Any]:
    refs = [{"$ref": _ref(model)} for model in models]
    return refs[0] if len(refs) == 1 else {"anyOf": refs}


def _ref(model: type[BaseModel]) -> str:
    return REF.format(model=model.__name__)


def features_schema(input_schema: list[FeatureSpec]) -> dict[str, Any]:
    """The JSON Schema of one row for this model: every feature, nothing else.

    Numbers outside the training range and unseen categories are valid (they are
    answered and flagged); only magnitudes the model cannot compute with are bounded.
    """
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [spec.name for spec in input_schema],
        "properties": {spec.name: _feature(spec) for spec in input_schema},
    }


def _feature(spec: FeatureSpec) -> dict[str, Any]:
    if spec.type == "category":
        return {"type": ["string", "null"]}
    limit = largest_plausible(spec)
    return {"type": ["number", "null"], "minimum": -limit, "maximum": limit}


def predict_request_schema(
    input_schema: list[FeatureSpec], max_rows: int
) -> dict[str, Any]:
    """`features` (one row) or `instances` (1 to `max_rows` rows), never both."""
    row = features_schema(input_schema)
    return {
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["features"],
                "properties": {"features": row},
            },
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["instances"],
                "properties": {
                    "instances": {
                        "type": "array", "minItems": 1, "maxItems": max_rows,
                        "items": row,
                    }
                },
            },
        ]
    }  # fmt: skip
