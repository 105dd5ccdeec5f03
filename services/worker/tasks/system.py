"""System tasks: a ping that proves a worker consumes the queue end to end."""

from __future__ import annotations

import logging
import os

from common import task_names as names
from services.worker.celery_app import app

log = logging.getLogger(__name__)


@app.task(name=names.PING)
def ping() -> dict[str, int]:
    """Answer with the worker's PID; used by health checks and tests."""
    return {"pid": os.getpid()}
