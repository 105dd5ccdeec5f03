"""gunicorn settings, read from the one Settings object."""

from typing import Any

from common.config import get_settings

_settings = get_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_workers
threads = _settings.api_threads
worker_class = "gthread"
timeout = 60
graceful_timeout = 30  # in-flight requests finish on SIGTERM
keepalive = 5
control_socket_disable = True  # else gunicorn 27 writes under ~/.gunicorn
accesslog = None
loglevel = _settings.log_level.lower()


def worker_exit(server: Any, worker: Any) -> None:
    """Write the buffered prediction log before the worker process ends."""
    from services.api.app import stop_background

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        stop_background(app)
