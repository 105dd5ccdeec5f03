"""Monitoring tasks run by beat."""

from __future__ import annotations

import logging

from celery import Task

from common import task_names as names
from common.models import registry
from common.monitoring import alerts, drift_checks, metrics, retraining_policy, webhooks
from common.queue import enqueue
from common.storage.db import session_scope
from services.worker.celery_app import app, settings
from services.worker.database import session_factory

log = logging.getLogger(__name__)


@app.task(name=names.SNAPSHOT_METRICS)
def snapshot_metrics() -> int:
    """Store the current window's metrics; returns the snapshot id."""
    with session_scope(session_factory(settings)) as session:
        return metrics.record_snapshot(session, settings.metrics_window_minutes).id


@app.task(name=names.CHECK_DRIFT)
def check_drift() -> int | None:
    """Check the champion's recent inputs for drift; returns the report id."""
    with session_scope(session_factory(settings)) as session:
        if registry.find_champion(session, settings) is None:
            log.info("drift check skipped: no champion yet")
            return None
        return drift_checks.run_drift_check(session, settings).id


@app.task(name=names.EVALUATE_ALERTS)
def evaluate_alerts() -> dict[str, list[int]]:
    """Open, refresh or resolve alerts; each change goes to the webhook on its own
    task, so a failing receiver never holds up other alerts."""
    with session_scope(session_factory(settings)) as session:
        champion = registry.find_champion(session, settings)
        changed = alerts.evaluate_alerts(
            session,
            settings.alert_rules,
            champion=champion.model_version if champion else None,
        )
    if settings.alert_webhook_url:
        for event, ids in changed.items():
            for alert_id in ids:
                enqueue(app, names.DELIVER_ALERT, alert_id, event)
    return changed


@app.task(name=names.APPLY_RETRAINING_POLICY)
def apply_retraining_policy() -> int | None:
    """Start a retrain when drift or live accuracy calls for it; returns its job id."""
    with session_scope(session_factory(settings)) as session:
        job = retraining_policy.apply_policy(
            session, settings, lambda job_id: enqueue(app, names.RETRAIN_MODEL, job_id)
        )
        return job.id if job else None


@app.task(name=names.SCHEDULED_RETRAIN)
def scheduled_retrain() -> int | None:
    """The retrain of `retrain_cron`; skipped while one is queued or running."""
    trigger = {"trigger": "schedule", "summary": f"scheduled ({settings.retrain_cron})",
               "evidence": {"cron": settings.retrain_cron}}  # fmt: skip
    with session_scope(session_factory(settings)) as session:
        job = retraining_policy.start_retrain(
            session, trigger, lambda job_id: enqueue(app, names.RETRAIN_MODEL, job_id)
        )
        return job.id if job else None


@app.task(name=names.DELIVER_ALERT, bind=True, max_retries=None)
def deliver_alert(self: Task, alert_id: int, event: str) -> bool:
    """POST one alert event to the webhook, retried with exponential backoff."""
    with session_scope(session_factory(settings)) as session:
        delivered = webhooks.deliver_alert(session, settings, alert_id, event)
    if not delivered and self.request.retries + 1 < settings.alert_webhook_attempts:
        raise self.retry(countdown=min(2 ** (self.request.retries + 1), 300))
    return delivered
