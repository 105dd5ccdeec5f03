"""Monitoring tasks run by beat: each one, called without a model, fans out into one
task per model, so a slow model (a big window, a slow drift check) delays no other."""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Task
from sqlalchemy import select

from common import task_names as names
from common.models import catalog, registry
from common.monitoring import (
    alerts,
    drift_checks,
    label_rollups,
    retraining_policy,
    webhooks,
)
from common.queue import enqueue
from common.rollouts import monitor
from common.storage.db import session_scope
from common.storage.tables import Rollout
from services.worker.celery_app import app, settings
from services.worker.database import session_factory

log = logging.getLogger(__name__)


def _fan_out(task: str, only: Callable[[str], bool] = lambda name: True) -> list[str]:
    """Queue `task` once per model; returns the models it was queued for."""
    with session_scope(session_factory(settings)) as session:
        models = [name for name in catalog.model_names(session) if only(name)]
    for name in models:
        enqueue(app, task, name)
    return models


@app.task(name=names.COUNT_LABELS)
def count_labels() -> int:
    """Count into the rollups the labels neither their feedback call nor the log
    writer could (they raced, or the log row came much later); returns how many."""
    with session_scope(session_factory(settings)) as session:
        return label_rollups.count_labels(session)


@app.task(name=names.CHECK_DRIFT)
def check_drift(model: str | None = None) -> int | list[str] | None:
    """Check a model champion's recent inputs for drift; returns the report id."""
    if model is None:
        return _fan_out(names.CHECK_DRIFT)
    scoped = settings.for_model(model)
    with session_scope(session_factory(settings)) as session:
        if registry.find_champion(session, scoped) is None:
            log.info("drift check of %s skipped: no champion yet", model)
            return None
        return drift_checks.run_drift_check(session, scoped).id


@app.task(name=names.EVALUATE_ALERTS)
def evaluate_alerts(model: str | None = None) -> dict[str, list[int]] | list[str]:
    """Open, refresh or resolve a model's alerts; each change goes to the webhook on
    its own task, so a failing receiver never holds up other alerts."""
    if model is None:
        return _fan_out(names.EVALUATE_ALERTS)
    scoped = settings.for_model(model)
    with session_scope(session_factory(settings)) as session:
        champion = registry.find_champion(session, scoped)
        changed = alerts.evaluate_alerts(
            session,
            model,
            scoped.alert_rules,
            champion=champion.model_version if champion else None,
        )
    if settings.alert_webhook_url:
        for event, ids in changed.items():
            for alert_id in ids:
                enqueue(app, names.DELIVER_ALERT, alert_id, event)
    return changed


@app.task(name=names.APPLY_RETRAINING_POLICY)
def apply_retraining_policy(model: str | None = None) -> int | list[str] | None:
    """Start a model's retrain when drift or live accuracy calls for it; returns its
    job id."""
    if model is None:
        return _fan_out(names.APPLY_RETRAINING_POLICY)
    with session_scope(session_factory(settings)) as session:
        job = retraining_policy.apply_policy(
            session, settings.for_model(model),
            lambda job_id: enqueue(app, names.RETRAIN_MODEL, job_id),
        )  # fmt: skip
        return job.id if job else None


@app.task(name=names.MONITOR_ROLLOUTS)
def monitor_rollouts(model: str | None = None) -> str | list[str] | None:
    """Judge a model's running rollout: promote or abort it on the evidence, the
    decision's alert to the webhook; returns the decision. Called without a model,
    fans out to the models with a rollout running."""
    if model is None:
        with session_scope(session_factory(settings)) as session:
            running = session.scalars(
                select(Rollout.model).where(Rollout.state == "running")
            ).all()
        for name in running:
            enqueue(app, names.MONITOR_ROLLOUTS, name)
        return list(running)
    with session_scope(session_factory(settings)) as session:
        decision = monitor.monitor_rollout(session, settings.for_model(model))
    if decision is None:
        return None
    if decision.alert_id is not None and settings.alert_webhook_url:
        enqueue(app, names.DELIVER_ALERT, decision.alert_id, "opened")
    return decision.verdict.decision


@app.task(name=names.SCHEDULED_RETRAIN)
def scheduled_retrain(model: str | None = None) -> int | list[str] | None:
    """The retrain of `retrain_cron`; skipped while one is queued or running. The
    deployment's cron fans out to the models that do not set their own."""
    if model is None:
        return _fan_out(
            names.SCHEDULED_RETRAIN,
            lambda name: settings.for_model(name).retrain_cron == settings.retrain_cron,
        )
    cron = settings.for_model(model).retrain_cron
    trigger = {"trigger": "schedule", "summary": f"scheduled ({cron})",
               "evidence": {"cron": cron}}  # fmt: skip
    with session_scope(session_factory(settings)) as session:
        job = retraining_policy.start_retrain(
            session, model, trigger,
            lambda job_id: enqueue(app, names.RETRAIN_MODEL, job_id),
        )  # fmt: skip
        return job.id if job else None


@app.task(name=names.DELIVER_ALERT, bind=True, max_retries=None)
def deliver_alert(self: Task, alert_id: int, event: str) -> bool:
    """POST one alert event to the webhook, retried with exponential backoff."""
    with session_scope(session_factory(settings)) as session:
        delivered = webhooks.deliver_alert(session, settings, alert_id, event)
    if not delivered and self.request.retries + 1 < settings.alert_webhook_attempts:
        raise self.retry(countdown=min(2 ** (self.request.retries + 1), 300))
    return delivered
