"""The Flask application factory."""

from __future__ import annotations

from flask import Flask

from common.config import Settings, get_settings
from common.queue import make_celery
from dashboard import bp as dashboard_bp
from services.api import database, prometheus
from services.api.alert_delivery import webhook_sender
from services.api.auth import check_read_access
from services.api.batcher import MicroBatcher
from services.api.blueprints import (
    alerts,
    demo,
    docs,
    feedback,
    health,
    jobs,
    models,
    monitoring,
    predict,
    rollouts,
)
from services.api.errors import register_error_handlers
from services.api.json_provider import OrjsonProvider
from services.api.log_process import LogProcess
from services.api.model_cache import ModelCache
from services.api.models_scope import ModelNameConverter
from services.api.prediction_log import PredictionLogWriter
from services.api.predictor import Predictor

BLUEPRINTS = (
    predict.bp,
    feedback.bp,
    models.bp,
    rollouts.bp,
    jobs.bp,
    monitoring.bp,
    alerts.bp,
    demo.bp,
    health.bp,
    docs.bp,
    dashboard_bp,
)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API app; `settings` defaults to the process settings.

    Background threads (model watcher, log writer, batcher) start lazily or through
    `start_background`, so creating an app in a test starts nothing.
    """
    settings = settings or get_settings()
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.url_map.converters["model_name"] = ModelNameConverter
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.extensions["settings"] = settings
    database.init_app(app, settings)
    factory = database.get_session_factory_of(app)
    celery = make_celery(settings)  # publishes jobs and alert deliveries; runs none
    app.extensions["alert_sender"] = webhook_sender(settings, celery)
    cache = ModelCache(settings, factory, on_alert=app.extensions["alert_sender"])
    log_writer: LogProcess | PredictionLogWriter | None = None
    if settings.prediction_logging:
        log_writer = (
            LogProcess(settings)
            if settings.prediction_log_process
            else PredictionLogWriter(settings, factory)
        )
    batcher = MicroBatcher(settings.microbatch_max_rows, settings.microbatch_wait_ms)
    app.extensions["model_cache"] = cache
    app.extensions["celery"] = celery
    app.extensions["flower_url"] = settings.flower_url or (
        f"http://{settings.flower_host}:{settings.flower_port}"
    )
    app.extensions["prediction_log"] = log_writer
    app.extensions["predictor"] = Predictor(settings, cache, batcher, log_writer)
    register_error_handlers(app)
    prometheus.instrument(app)
    app.before_request(check_read_access)
    for bp in BLUEPRINTS:
        app.register_blueprint(bp)
    return app


def start_background(app: Flask) -> None:
    """Load the champion now, then watch for new generations (once per process)."""
    cache: ModelCache = app.extensions["model_cache"]
    cache.refresh()
    cache.start()
    if app.extensions["prediction_log"] is not None:
        app.extensions["prediction_log"].start()


def stop_background(app: Flask) -> None:
    """Stop the threads and write every buffered prediction log row."""
    app.extensions["model_cache"].stop()
    app.extensions["predictor"].shadow.drain(timeout=2)
    app.extensions["predictor"].shadow.stop()
    app.extensions["predictor"].batcher.stop()
    if app.extensions["prediction_log"] is not None:
        app.extensions["prediction_log"].close()
    app.extensions["engine"].dispose()
