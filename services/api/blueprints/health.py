"""Liveness and readiness probes."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, current_app

from common.broker import check_broker
from common.errors import AppError
from common.process_state import read_state
from common.storage.db import check_database
from services.api import schemas as s
from services.api.database import get_engine
from services.api.declare import api
from services.api.model_cache import ModelCache

bp = Blueprint("health", __name__)


@bp.get("/livez")
@api("The process answers", s.LiveOut, tags=("health",))
def livez() -> dict[str, Any]:
    """The process answers."""
    return {"status": "alive"}


@bp.get("/readyz")
@api("Ready to serve", s.ReadyOut, other={503: s.ReadyOut}, tags=("health",))
def readyz() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Ready when the database and broker answer and a model is loaded; else 503.
    Under `modelops up`, also what its supervisor knows of each process."""
    settings = current_app.extensions["settings"]
    cache: ModelCache = current_app.extensions["model_cache"]
    checks: dict[str, str] = {}
    for name, check in (
        ("database", lambda: check_database(get_engine())),
        ("broker", lambda: check_broker(settings.redis_url)),
    ):
        try:
            check()
            checks[name] = "ok"
        except AppError as exc:
            checks[name] = f"{exc.message}: {exc.details.get('reason', '')}".rstrip(
                ": "
            )
    loaded = cache.refresh() if checks["database"] == "ok" else cache.current
    checks["model"] = "ok" if loaded else (cache.last_error or "no model loaded")
    ready = all(value == "ok" for value in checks.values())
    body: dict[str, Any] = {
        "status": "ready" if ready else "not_ready",
        "checks": checks,
        "pid": os.getpid(),
    }
    if loaded:
        body["model_version"] = loaded.version
    body["rollouts"] = cache.following()
    supervised = read_state(settings.home)
    if supervised is not None:  # under `modelops up`: each child, its restarts
        body["processes"] = supervised["processes"]
    headers = {} if ready else {"Retry-After": "5"}
    return body, 200 if ready else 503, headers
