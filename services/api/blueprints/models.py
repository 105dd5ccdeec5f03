"""The registry over HTTP: status, versions, promote and rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app
from sqlalchemy.orm import Session

from common.errors import ArtifactError
from common.jobs.retraining import check_retrain_params
from common.models import registry
from common.monitoring import alerts
from common.storage.tables import Champion
from services.api import schemas
from services.api.auth import require_api_key
from services.api.database import get_session
from services.api.job_submission import submit
from services.api.requests import parse_body
from services.api.schemas import ActionRequest, RetrainRequest

bp = Blueprint("models", __name__)
ACTOR = "api"


def _settings() -> Any:
    return current_app.extensions["settings"]


@bp.get("/model/status")
def model_status() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Champion metadata, its input schema and whether this process serves it."""
    champion = registry.get_champion(get_session(), _settings())
    body = schemas.model_status_out(
        champion, current_app.extensions["model_cache"].current
    )
    return body, 200, {"X-Model-Version": str(body["version"])}


@bp.post("/model/retrain")
@require_api_key
def retrain() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Queue a retraining job; poll its status_url."""
    body = parse_body(RetrainRequest, optional=True)
    session = get_session()
    params = check_retrain_params(
        session, _settings(), body.model_dump(exclude_none=True, mode="json")
    )
    return submit("retrain", params, body.reason or "manual retrain via API")


@bp.post("/model/rollback")
@require_api_key
def rollback() -> dict[str, Any]:
    """Serve the champion before the current one again."""
    body = parse_body(ActionRequest, optional=True)
    session = get_session()
    previous = registry.get_champion(session, _settings()).model_version.version
    champion = _switch(session, previous, lambda: registry.rollback(
        session, _settings(), reason=body.reason or "rollback via API", actor=ACTOR
    ))  # fmt: skip
    return schemas.champion_out(champion, previous)


@bp.get("/models")
def list_models() -> dict[str, Any]:
    """Every version, newest first, with metrics, state and provenance."""
    session = get_session()
    champion = registry.find_champion(session, _settings())
    return {
        "champion_version": champion.model_version.version if champion else None,
        "models": [
            schemas.model_version_out(v)
            for v in registry.list_versions(session, _settings())
        ],
    }


@bp.get("/models/<int(max=2147483647):version>")
def get_model(version: int) -> dict[str, Any]:
    """One version."""
    return schemas.model_version_out(
        registry.get_version(get_session(), _settings(), version)
    )


@bp.post("/models/<int(max=2147483647):version>/promote")
@require_api_key
def promote(version: int) -> dict[str, Any]:
    """Make `version` the champion; API processes swap to it within a second."""
    body = parse_body(ActionRequest, optional=True)
    session = get_session()
    current = registry.find_champion(session, _settings())
    previous = current.model_version.version if current else None
    champion = _switch(session, previous, lambda: registry.promote_version(
        session, _settings(), version, reason=body.reason or "promoted via API",
        actor=ACTOR,
    ))  # fmt: skip
    return schemas.champion_out(champion, previous)


def _switch(
    session: Session, serving: int | None, change: Callable[[], Champion]
) -> Champion:
    """Commit a champion change; a version whose artifact is refused stays out, the
    caller gets the 409, and an alert records it for whoever watches."""
    try:
        champion = change()
    except ArtifactError as exc:
        session.rollback()
        alert = alerts.artifact_refused(
            session, exc.details["version"], exc.message, serving
        )
        session.commit()
        if alert is not None:
            current_app.extensions["alert_sender"](alert.id, "opened")
        raise
    healed = alerts.artifact_accepted(session, champion.model_version.version)
    session.commit()
    if healed is not None:
        current_app.extensions["alert_sender"](healed.id, "resolved")
    return champion
