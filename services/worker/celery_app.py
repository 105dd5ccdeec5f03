"""The worker's Celery app: `celery -A services.worker.celery_app worker`."""

from __future__ import annotations

from typing import Any

from celery.signals import task_postrun

from common import memory
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


@task_postrun.connect(weak=False)
def _give_memory_back(**_: Any) -> None:
    """A task's frames and frames' buffers (pandas, scikit-learn) are freed when it
    ends, but glibc keeps the heap unless asked: without this a long-lived child's
    RSS climbs to the peak of every task it ran."""
    memory.give_back()
