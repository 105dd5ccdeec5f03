"""The registry over HTTP: every model, and each one's status, versions, promote,
rollback and retrain. The single-model routes (/model/status, /model/retrain,
/model/rollback, /models/<version>) act on the default model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app
from sqlalchemy.orm import Session

from common.config import Settings
from common.errors import ArtifactError
from common.jobs.retraining import check_retrain_params
from common.models import registry
from common.monitoring import alerts
from common.monitoring.overview import model_summaries
from common.storage.tables import Champion
from services.api import schemas
from services.api import schemas as s
from services.api.auth import require_api_key
from services.api.database import get_session
from services.api.declare import api
from services.api.job_submission import submit
from services.api.model_cache import ModelCache
from services.api.models_scope import model_settings, settings
from services.api.registration import register_from_request
from services.api.requests import parse_body
from services.api.schemas import ActionRequest, RetrainRequest

bp = Blueprint("models", __name__)
RETRAIN = {
    "ok": (s.JobAcceptedOut,), "ok_status": 202, "body": s.RetrainRequest,
    "body_required": False, "errors": (400, 404, 409, 413, 415, 422, 503),
    "tags": ("jobs",),
}  # fmt: skip
SWITCH = {
    "ok": (s.ChampionOut,), "body": s.ActionRequest, "body_required": False,
    "errors": (400, 404, 409, 413, 415, 503), "tags": ("models",),
}  # fmt: skip
ACTOR = "api"
VERSION = "<int(max=2147483647):version>"


def _cache() -> ModelCache:
    cache: ModelCache = current_app.extensions["model_cache"]
    return cache


# -- every model ---------------------------------------------------------------


@bp.get("/models")
@api("Every model", s.ModelsOut, tags=("models",))
def list_models() -> dict[str, Any]:
    """Every model: task, champion, versions, traffic, accuracy or error, drift
    state and open alerts."""
    loaded = {m.name for m in _cache().loaded()}
    summaries = model_summaries(get_session(), settings())
    for summary in summaries:
        summary["loaded"] = summary["name"] in loaded
    return {"default_model": settings().default_model, "models": summaries}


@bp.post("/models")
@require_api_key
@api("Register a version from a model file and its reference data",
     s.RegisteredOut, ok_status=201, upload=s.RegisterUpload,
     errors=(400, 403, 409, 413, 415, 422), tags=("models",))  # fmt: skip
def register() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Register a version from a model file (skops; joblib or pickle when allowed)
    and its reference data."""
    body = register_from_request(settings())
    return body, 201, {"Location": f"/models/{body['name']}/versions/{body['version']}"}


# -- one model -------------------------------------------------------------------


@bp.get("/model/status")
@api("The default model's champion", s.ModelStatusOut, errors=(503,),
     tags=("models",))  # fmt: skip
def model_status() -> tuple[dict[str, Any], int, dict[str, str]]:
    """The default model's champion, its input schema and whether this process
    serves it."""
    return _status(None)


@bp.get("/models/<model_name:name>")
@api("A model's champion with its input schema", s.ModelStatusOut,
     errors=(404, 503), tags=("models",))  # fmt: skip
def model_status_of(name: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A model's champion, its input schema and whether this process serves it."""
    return _status(name)


def _status(name: str | None) -> tuple[dict[str, Any], int, dict[str, str]]:
    scoped = model_settings(name)
    champion = registry.get_champion(get_session(), scoped)
    body = schemas.model_status_out(champion, _cache().get(scoped.model_name))
    return body, 200, {"X-Model-Version": str(body["version"])}


@bp.post("/model/retrain")
@require_api_key
@api("Queue a retraining job of the default model", **RETRAIN)
def retrain() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Queue a retraining job of the default model; poll its status_url."""
    return _retrain(None)


@bp.post("/models/<model_name:name>/retrain")
@require_api_key
@api("Queue a retraining job of a model", **RETRAIN)
def retrain_model(name: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Queue a retraining job of a model (one at a time per model)."""
    return _retrain(name)


def _retrain(name: str | None) -> tuple[dict[str, Any], int, dict[str, str]]:
    scoped = model_settings(name)
    body = parse_body(RetrainRequest, optional=True)
    params = check_retrain_params(
        get_session(), scoped, body.model_dump(exclude_none=True, mode="json")
    )
    reason = body.reason or "manual retrain via API"
    return submit("retrain", params, reason, model=scoped.model_name)


@bp.post("/model/rollback")
@require_api_key
@api("Serve the default model's previous champion again", **SWITCH)
def rollback() -> dict[str, Any]:
    """Serve the default model's champion before the current one again."""
    return _rollback(None)


@bp.post("/models/<model_name:name>/rollback")
@require_api_key
@api("Serve a model's previous champion again", **SWITCH)
def rollback_model(name: str) -> dict[str, Any]:
    """Serve a model's champion before the current one again."""
    return _rollback(name)


def _rollback(name: str | None) -> dict[str, Any]:
    scoped = model_settings(name)
    body = parse_body(ActionRequest, optional=True)
    session = get_session()
    previous = registry.get_champion(session, scoped).model_version.version
    champion = _switch(session, scoped, previous, lambda: registry.rollback(
        session, scoped, reason=body.reason or "rollback via API", actor=ACTOR
    ))  # fmt: skip
    return schemas.champion_out(champion, previous)


# -- versions ----------------------------------------------------------------------


@bp.get("/models/<model_name:name>/versions")
@api("Every version of a model", s.VersionListOut, errors=(404,), tags=("models",))
def list_versions(name: str) -> dict[str, Any]:
    """Every version of a model, newest first, with metrics, state and provenance."""
    return _versions(model_settings(name))


@bp.get(f"/models/<model_name:name>/versions/{VERSION}")
@api("One version of a model", s.ModelVersionOut, errors=(404,), tags=("models",))
def get_version(name: str, version: int) -> dict[str, Any]:
    """One version of a model."""
    return schemas.model_version_out(
        registry.get_version(get_session(), model_settings(name), version)
    )


@bp.post(f"/models/<model_name:name>/versions/{VERSION}/promote")
@require_api_key
@api("Make a version its model's champion", **SWITCH)
def promote_version(name: str, version: int) -> dict[str, Any]:
    """Make a version its model's champion; API processes swap within a second."""
    return _promote(model_settings(name), version)


@bp.get(f"/models/{VERSION}")
@api("One version of the default model", s.ModelVersionOut, errors=(404,),
     tags=("models",))  # fmt: skip
def get_default_version(version: int) -> dict[str, Any]:
    """One version of the default model (the single-model API's route)."""
    return schemas.model_version_out(
        registry.get_version(get_session(), model_settings(), version)
    )


@bp.post(f"/models/{VERSION}/promote")
@require_api_key
@api("Make a version of the default model its champion", **SWITCH)
def promote_default_version(version: int) -> dict[str, Any]:
    """Make a version of the default model its champion."""
    return _promote(model_settings(), version)


def _versions(scoped: Settings) -> dict[str, Any]:
    # One SELECT: SQLite runs each read on its own snapshot, so a champion read
    # apart from the list could disagree with it during a promotion (a dashboard
    # once showed two champions for a moment).
    versions = registry.list_versions(get_session(), scoped)
    champions = [v.version for v in versions if v.state == "champion"]
    return {
        "model": scoped.model_name,
        "champion_version": champions[0] if champions else None,
        "models": [schemas.model_version_out(v) for v in versions],
    }


def _promote(scoped: Settings, version: int) -> dict[str, Any]:
    body = parse_body(ActionRequest, optional=True)
    session = get_session()
    current = registry.find_champion(session, scoped)
    previous = current.model_version.version if current else None
    champion = _switch(session, scoped, previous, lambda: registry.promote_version(
        session, scoped, version, reason=body.reason or "promoted via API",
        actor=ACTOR,
    ))  # fmt: skip
    return schemas.champion_out(champion, previous)


def _switch(
    session: Session,
    scoped: Settings,
    serving: int | None,
    change: Callable[[], Champion],
) -> Champion:
    """Commit a champion change; a version whose artifact is refused stays out, the
    caller gets the 409, and an alert records it for whoever watches."""
    name = scoped.model_name
    try:
        champion = change()
    except ArtifactError as exc:
        session.rollback()
        alert = alerts.artifact_refused(
            session, name, exc.details["version"], exc.message, serving
        )
        session.commit()
        if alert is not None:
            current_app.extensions["alert_sender"](alert.id, "opened")
        raise
    healed = alerts.artifact_accepted(session, name, champion.model_version.version)
    session.commit()
    if healed is not None:
        current_app.extensions["alert_sender"](healed.id, "resolved")
    return champion
