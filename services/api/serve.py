"""The API server: `python -m services.api.serve`.

The Flask app (services/api/wsgi.py) under granian's WSGI server: HTTP parsing and
writing run in Rust outside the GIL, so an API process spends its Python time on
requests, not on the protocol (1.3-1.4x the requests of gunicorn's threaded workers
for the same app on two cores; docs/performance.md). Every setting comes from the
one Settings object.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import MPServer

from common.config import Settings, get_settings
from common.logging import LOG_FORMAT

TARGET = "services.api.wsgi:app"
STOP_SECONDS = 30  # in-flight requests and the buffered log finish on SIGTERM


def prometheus_dir(settings: Settings) -> Path:
    """Where the API processes share their request counters (prometheus_client's
    multiprocess mode), cleared at every start of the server."""
    return Path(settings.home).resolve() / "prometheus"


class _NoThreadCountHint(logging.Filter):
    """granian warns when threads outnumber cores twice over and advises a
    backpressure, which is set (to the thread count): an API process's threads
    spend much of their time waiting (on the database, a batch, a loading model),
    so more threads than cores is the design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Python threads" not in record.getMessage()


# granian's own records (start, workers spawned and replaced) in the format of ours,
# on stderr like ours.
LOGGING = {
    "formatters": {"generic": {"()": "logging.Formatter", "fmt": LOG_FORMAT}},
    "filters": {"no_thread_hint": {"()": _NoThreadCountHint}},
    "handlers": {
        "console": {
            "formatter": "generic", "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr", "filters": ["no_thread_hint"],
        },
        "access": {  # granian's access log stays off (its setting's default)
            "formatter": "generic", "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
        },
    },
}  # fmt: skip


def build_server(settings: Settings) -> MPServer:
    """A granian server of `settings.api_workers` processes, each answering on
    `settings.api_threads` threads; the rest wait in the listen queue (their
    bodies unread), so a burst costs no memory in Python."""
    return MPServer(
        TARGET,
        address=settings.api_host,
        port=settings.api_port,
        interface=Interfaces.WSGI,
        workers=settings.api_workers,
        blocking_threads=settings.api_threads,
        backpressure=settings.api_threads,
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(keep_alive=True),
        websockets=False,
        log_level=LogLevels(settings.log_level.lower()),
        log_dictconfig=LOGGING,
        respawn_failed_workers=True,  # a killed API process is replaced at once
        respawn_interval=0.5,
        workers_kill_timeout=STOP_SECONDS,
    )


def main() -> None:
    settings = get_settings()
    directory = prometheus_dir(settings)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    # Set before any API process imports prometheus_client (they are forked).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    build_server(settings).serve()


if __name__ == "__main__":
    main()
