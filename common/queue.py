"""The Celery application factory and job hand-off: the only module of `common` that
imports Celery."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.signals import setup_logging
from kombu import Queue
from kombu.exceptions import OperationalError

from common import task_names as names
from common.config import Settings
from common.errors import DependencyError
from common.logging import configure_logging

log = logging.getLogger(__name__)

TRAINING_QUEUE = "training"
DEFAULT_QUEUE = "default"
QUEUE_OF = {names.RETRAIN_MODEL: TRAINING_QUEUE, names.RESET_DEMO: TRAINING_QUEUE}
TASK_OF_KIND = {
    "retrain": names.RETRAIN_MODEL,
    "batch_score": names.SCORE_BATCH,
    "demo_reset": names.RESET_DEMO,
}
SOFT_LIMIT_SHARE = 0.9


def time_limits(settings: Settings) -> dict[str, dict[str, float]]:
    """Hard and soft limits per task name; '*' covers the short tasks."""

    def limits(hard: int) -> dict[str, float]:
        return {"time_limit": hard, "soft_time_limit": hard * SOFT_LIMIT_SHARE}

    return {
        names.RETRAIN_MODEL: limits(settings.retrain_time_limit_seconds),
        names.SCORE_BATCH: limits(settings.score_time_limit_seconds),
        "*": limits(settings.default_time_limit_seconds),
    }


def _keep_our_logging(settings: Settings) -> None:
    """Workers and beat log at `MODELOPS_LOG_LEVEL` in our format. Without a
    `setup_logging` receiver Celery resets the root level to its `--loglevel`
    (WARNING by default) and every INFO record of a task is lost."""

    def configure(**_: Any) -> None:
        configure_logging(settings)

    setup_logging.connect(configure, weak=False, dispatch_uid="modelops-logging")


def make_celery(settings: Settings, include: Sequence[str] = ()) -> Celery:
    """Build a Celery app on Redis with the reliability settings of DESIGN.md §6."""
    _keep_our_logging(settings)
    # No result backend: a job's row holds its state, progress and result.
    app = Celery("modelops", broker=settings.redis_url)
    longest = max(
        settings.retrain_time_limit_seconds, settings.default_time_limit_seconds
    )
    timeout = settings.broker_publish_timeout_seconds
    transport = {
        # A task unacknowledged this long is handed to another worker: twice the
        # longest hard limit, so a slow job is never run twice.
        "visibility_timeout": 2 * longest,
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
        "socket_connect_timeout": timeout / 2,
        "socket_timeout": timeout,
    }
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
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024,  # in KiB
        task_annotations={
            name: {
                "time_limit": v["time_limit"],
                "soft_time_limit": v["soft_time_limit"],
            }
            for name, v in time_limits(settings).items()
        },
        task_time_limit=settings.default_time_limit_seconds,
        task_ignore_result=True,
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=timeout,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options=transport,
        task_queues=(Queue(TRAINING_QUEUE), Queue(DEFAULT_QUEUE)),
        task_default_queue=DEFAULT_QUEUE,
        task_routes={name: {"queue": queue} for name, queue in QUEUE_OF.items()},
        worker_hijack_root_logger=False,
    )
    return app


def enqueue(app: Celery, name: str, *args: Any) -> str:
    """Publish a task, retrying briefly; return its id.

    Raises
    ------
    DependencyError
        Redis did not take the task within the bounded retries (about
        `broker_publish_timeout_seconds`).
    """
    try:
        result = app.send_task(
            name,
            args=list(args),
            queue=QUEUE_OF.get(name, DEFAULT_QUEUE),
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0.2, "interval_step": 0,
                          "interval_max": 0.2},
        )  # fmt: skip
    except (OperationalError, OSError) as exc:
        log.warning("publish of %s failed: %s", name, exc)
        raise DependencyError(
            "the job queue (Redis) is unreachable", reason=str(exc)
        ) from exc
    return str(result.id)
