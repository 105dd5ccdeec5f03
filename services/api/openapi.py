"""The OpenAPI 3.1 document, built from the app's routes (path and method from
Flask's routing, answers and body from each view's `@api` declaration, auth from its
key decorator) and the pydantic schemas that validate."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common.config import Settings
from common.models.schemas import FeatureSpec
from common.models.validation import MAX_CATEGORY_LENGTH, NO_NUL, largest_plausible
from services.api import schemas as s
from services.api.auth import read_needs_key
from services.api.declare import Declaration, auth_of, declaration_of

REF = "#/components/schemas/{model}"


MAX_ID = 2**31 - 1  # ids and versions are 32-bit integers in every database
PATH_PARAMS = {
    name: {"name": name, "in": "path", "required": True,
           "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID}}
    for name in ("version", "job_id", "alert_id")
}  # fmt: skip
PATH_PARAMS["name"] = {
    "name": "name", "in": "path", "required": True,
    "description": "A model's name (GET /models lists them)",
    "schema": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,62}$"},
}  # fmt: skip
_CONVERTER = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
SKIPPED = {"HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Operation:
    """A declared route with its path and method, as the document lists it."""

    method: str
    path: str
    declared: Declaration
    auth: str | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.declared, name)


def operations(app: Flask) -> list[Operation]:
    """Every declared route of `app`, in routing order."""
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        declared = declaration_of(view)
        if declared is None:
            continue
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - SKIPPED):
            found.append(Operation(method.lower(), path, declared, auth_of(view)))
    return found


STATUS_TEXT = {
    400: "Invalid input; `details.problems` lists every problem with its field",
    401: "Missing or wrong API key",
    403: "The deployment does not allow it (see the message for the setting)",
    404: "Unknown resource",
    408: "The prediction exceeded its time budget",
    409: "The current state forbids it",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Well-formed but unusable: a model refused, too few labels, a row the "
    "model could not score",
    500: "Internal error",
    503: "Not ready (no model, database or broker); retry after `Retry-After`",
}


@dataclass(frozen=True)
class ModelInputs:
    """What the document says of one model's champion: its features."""

    name: str
    input_schema: list[FeatureSpec]


def build_openapi(
    app: Flask, settings: Settings, models: list[ModelInputs] | None = None
) -> dict[str, Any]:
    """Return the document of `app`'s declared routes for this configuration (batch
    limit, auth) and, per model with a champion, a predict path with its own input
    schema; the root /predict takes the default model's."""
    ops = [
        op for op in operations(app)
        if settings.demo_on or "demo" not in op.tags  # demo routes: demo mode only
    ]  # fmt: skip
    bodies = (
        {s.ErrorOut}
        | {m for op in ops for m in op.ok}
        | {op.body for op in ops if op.body}
        | {op.upload for op in ops if op.upload}
        | {m for op in ops for m in op.other.values()}
    )
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(bodies, key=lambda m: m.__name__)],
        ref_template=REF,
    )
    components = defs.get("$defs", {})
    if "PredictRequest" in components:  # any model's: exactly one of the two keys
        components["PredictRequest"] = predict_request_schema(
            None, settings.max_batch_instances
        )
    paths: dict[str, Any] = {}
    for op in ops:
        paths.setdefault(op.path, {})[op.method] = _operation(op, settings)
    for model in models or []:
        schema_name = f"PredictRequest_{model.name}"
        components[schema_name] = predict_request_schema(
            model.input_schema, settings.max_batch_instances
        )
        if model.name == settings.default_model and "/predict" in paths:
            _body_ref(paths["/predict"]["post"], schema_name)
        template = paths.get("/models/{name}/predict", {}).get("post")
        if template is not None:
            concrete = copy.deepcopy(template)
            concrete["operationId"] = f"predict_{model.name}"
            concrete["summary"] = f"Predict with model {model.name}"
            concrete["parameters"] = [
                p for p in concrete.get("parameters", []) if p["name"] != "name"
            ]
            if not concrete["parameters"]:
                del concrete["parameters"]
            _body_ref(concrete, schema_name)
            paths[f"/models/{model.name}/predict"] = {"post": concrete}
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


def _body_ref(operation: dict[str, Any], schema_name: str) -> None:
    content = operation["requestBody"]["content"]["application/json"]
    content["schema"] = {"$ref": REF.format(model=schema_name)}


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
        "operationId": _operation_id(op),
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
    content = {}
    if op.body is not None:
        content["application/json"] = {"schema": {"$ref": _ref(op.body)}}
    if op.upload is not None:
        content["multipart/form-data"] = {"schema": {"$ref": _ref(op.upload)}}
    if content:
        required = op.body_required or op.body is None
        operation["requestBody"] = {"required": required, "content": content}
    if secured:
        operation["security"] = [{"bearer": []}, {"apiKey": []}]
    return operation


def _operation_id(op: Operation) -> str:
    path = op.path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
    return f"{op.method}_{path}".replace("-", "_")


def _query_schema(name: str, kind: str) -> dict[str, Any]:
    if kind == "job_state":
        return {
            "type": "string",
            "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
        }
    if kind == "model":
        return {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,62}$"}
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
    if spec.type == "category":  # validation refuses a longer one: say so here
        return {"type": ["string", "null"], "maxLength": MAX_CATEGORY_LENGTH,
                "pattern": NO_NUL}  # fmt: skip
    limit = largest_plausible(spec)
    return {"type": ["number", "null"], "minimum": -limit, "maximum": limit}


def predict_request_schema(
    input_schema: list[FeatureSpec] | None, max_rows: int
) -> dict[str, Any]:
    """`features` (one row) or `instances` (1 to `max_rows` rows), never both; a row
    is the model's own features, or any object when the model is not known here."""
    row = (
        features_schema(input_schema) if input_schema is not None
        else {"type": "object", "description": s.FEATURES_DOC}
    )  # fmt: skip
    routing_key = {"type": "string", "minLength": 1, "maxLength": 200,
                   "description": s.ROUTING_KEY_DOC}  # fmt: skip
    return {
        "oneOf": [
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["features"],
                "properties": {"features": row, "routing_key": routing_key},
            },
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["instances"],
                "properties": {
                    "instances": {
                        "type": "array", "minItems": 1, "maxItems": max_rows,
                        "items": row,
                    },
                    "routing_key": routing_key,
                },
            },
        ]
    }  # fmt: skip
