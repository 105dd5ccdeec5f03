"""The serving model: `GET /model/status`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from common import registry
from services.api import schemas
from services.api.database import get_session
from services.api.model_cache import ModelCache

bp = Blueprint("model", __name__, url_prefix="/model")


@bp.get("/status")
def model_status() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Champion metadata, its input schema and whether this process serves it."""
    settings = current_app.extensions["settings"]
    cache: ModelCache = current_app.extensions["model_cache"]
    champion = registry.get_champion(get_session(), settings)
    body = schemas.model_status_out(champion, cache.current)
    return body, 200, {"X-Model-Version": str(body["version"])}
