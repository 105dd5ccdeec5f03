"""gunicorn settings, read from the one Settings object."""

import os
import shutil
from pathlib import Path
from typing import Any

from common.config import get_settings

_settings = get_settings()

# Request metrics of all workers are summed through files here (prometheus_client's
# multiprocess mode); set before any worker imports prometheus_client.
_prometheus_dir = Path(_settings.home).resolve() / "prometheus"
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_prometheus_dir)

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


def post_fork(server: Any, worker: Any) -> None:
    """Two malloc arenas for the worker's many threads, not eight per core: a
    process serving many models keeps its RSS near what the models hold."""
    from common.memory import limit_arenas

    limit_arenas(2)


def worker_exit(server: Any, worker: Any) -> None:
    """Write the buffered prediction log before the worker process ends."""
    from services.api.app import stop_background

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        stop_background(app)


def on_starting(server: Any) -> None:
    """Start the request counters from zero for this server."""
    shutil.rmtree(_prometheus_dir, ignore_errors=True)
    _prometheus_dir.mkdir(parents=True, exist_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Let the multiprocess collector drop a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
