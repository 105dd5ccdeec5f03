"""The Celery application factory: the only module of `common` that imports Celery."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery
from kombu import Queue

from common.config import Settings

TRAINING_QUEUE = "training"
DEFAULT_QUEUE = "default"
HARD_TIME_LIMIT_SECONDS = 3600


def make_celery(settings: Settings, include: Sequence[str] = ()) -> Celery:
    """Build a Celery app on Redis with the reliability settings of DESIGN.md §6."""
    app = Celery("modelops", broker=settings.redis_url, backend=settings.redis_url)
    app.conf.update(
        include=list(include),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=HARD_TIME_LIMIT_SECONDS,
        task_ignore_result=True,
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options={"visibility_timeout": 2 * HARD_TIME_LIMIT_SECONDS},
        result_backend_transport_options={
            "visibility_timeout": 2 * HARD_TIME_LIMIT_SECONDS
        },
        task_queues=(Queue(TRAINING_QUEUE), Queue(DEFAULT_QUEUE)),
        task_default_queue=DEFAULT_QUEUE,
        worker_hijack_root_logger=False,
    )
    return app
