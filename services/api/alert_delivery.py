"""Alerts the API itself opens (a refused artifact) go to the webhook like the ones
beat opens: through a delivery task on a worker, retried with backoff."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery

from common import task_names as names
from common.config import Settings
from common.errors import DependencyError
from common.queue import enqueue

log = logging.getLogger(__name__)


def webhook_sender(settings: Settings, celery: Celery) -> Callable[[int, str], None]:
    """A function that queues the webhook delivery of an alert event ("opened",
    "resolved"; nothing when no webhook is configured). With Redis down the alert
    stays on the dashboard and in `GET /alerts`, and the failure is logged."""

    def send(alert_id: int, event: str) -> None:
        if not settings.alert_webhook_url:
            return
        try:
            enqueue(celery, names.DELIVER_ALERT, alert_id, event)
        except DependencyError as exc:
            log.warning("alert %d not queued for the webhook: %s", alert_id, exc)

    return send
