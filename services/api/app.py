"""The Flask application factory."""

from __future__ import annotations

from flask import Flask

from common.config import Settings, get_settings
from dashboard import bp as dashboard_bp
from services.api import database
from services.api.blueprints import health, models
from services.api.errors import register_error_handlers
from services.api.model_cache import ModelCache

BLUEPRINTS = (health.bp, models.bp, dashboard_bp)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API app; `settings` defaults to the process settings."""
    settings = settings or get_settings()
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["settings"] = settings
    database.init_app(app, settings)
    app.extensions["model_cache"] = ModelCache(
        settings, database.get_session_factory_of(app)
    )
    register_error_handlers(app)
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    return app
