"""The worker's Celery app: `celery -A services.worker.celery_app worker`."""

from __future__ import annotations

from common.config import get_settings
from common.logging import configure_logging
from common.queue import make_celery

TASK_MODULES = (
    "services.worker.tasks.training",
    "services.worker.tasks.scoring",
    "services.worker.tasks.maintenance",
    "services.worker.tasks.monitoring",
    "services.worker.tasks.demo",
)

settings = get_settings()
configure_logging(settings)
app = make_celery(settings, include=TASK_MODULES)
