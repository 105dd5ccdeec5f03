"""Monitoring tasks run by beat."""

from __future__ import annotations

import logging

from common import metrics
from common import task_names as names
from common.storage.db import session_scope
from services.worker.celery_app import app, settings
from services.worker.database import session_factory

log = logging.getLogger(__name__)


@app.task(name=names.SNAPSHOT_METRICS)
def snapshot_metrics() -> int:
    """Store the current window's metrics; returns the snapshot id."""
    with session_scope(session_factory(settings)) as session:
        return metrics.record_snapshot(session, settings.metrics_window_minutes).id
