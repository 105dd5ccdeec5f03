"""Beat's Celery app: `celery -A services.scheduler.beat beat`. Imports no task code."""

from __future__ import annotations

from common.config import get_settings
from common.logging import configure_logging
from common.queue import make_celery
from services.scheduler.schedule import build_beat_schedule

settings = get_settings()
configure_logging(settings)
app = make_celery(settings)
app.conf.beat_schedule = build_beat_schedule(settings)
