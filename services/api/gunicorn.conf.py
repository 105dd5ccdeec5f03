"""gunicorn settings, read from the one Settings object."""

from common.config import get_settings

_settings = get_settings()

bind = f"{_settings.api_host}:{_settings.api_port}"
workers = _settings.api_workers
threads = _settings.api_threads
worker_class = "gthread"
timeout = 60
graceful_timeout = 30
control_socket_disable = True  # else gunicorn 27 writes under ~/.gunicorn
accesslog = None
loglevel = _settings.log_level.lower()
