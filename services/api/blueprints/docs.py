"""`GET /openapi.json` and `GET /docs` (Swagger UI from npm, served locally)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, render_template, send_from_directory
from flask.typing import ResponseReturnValue

from common.models import registry
from dashboard import NODE_MODULES
from services.api.database import get_session
from services.api.openapi import ModelInputs, build_openapi

bp = Blueprint(
    "docs",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/docs/static",
)

SWAGGER_DIR = NODE_MODULES / "swagger-ui-dist"
SWAGGER_FILES = {"swagger-ui-bundle.js", "swagger-ui.css"}


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    """The OpenAPI document of this server, with each model's own features."""
    models = [
        ModelInputs(name, schema)
        for name, schema in registry.champion_schemas(get_session())
    ]
    return build_openapi(current_app, current_app.extensions["settings"], models)


@bp.get("/docs")
def docs() -> str:
    """Swagger UI over /openapi.json."""
    return render_template("docs.html", assets=SWAGGER_DIR.is_dir())


@bp.get("/docs/assets/<name>")
def docs_asset(name: str) -> ResponseReturnValue:
    """Swagger UI's files from the npm-installed package."""
    if name not in SWAGGER_FILES:
        abort(404)
    return send_from_directory(SWAGGER_DIR, name, max_age=3600)
