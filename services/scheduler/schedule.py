"""The periodic plan, as data. Beat enqueues fan-out tasks only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.schedules import crontab

from common import task_names as names
from common.config import Settings


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Return beat's schedule for `settings`."""
    stall_check = timedelta(seconds=max(5, settings.job_stall_seconds // 3))
    snapshot_every = timedelta(seconds=settings.metrics_snapshot_seconds)
    drift_every = timedelta(seconds=settings.drift_check_seconds)
    monitor_every = timedelta(seconds=settings.monitor_interval_seconds)
    plan: dict[str, dict[str, Any]] = {
        "retraining-policy": {
            "task": names.APPLY_RETRAINING_POLICY,
            "schedule": monitor_every,
            "options": {"expires": monitor_every.total_seconds()},
        },
        "alerts-evaluate": {
            "task": names.EVALUATE_ALERTS,
            "schedule": monitor_every,
            # not started before the next one is due: discarded, the next one counts
            "options": {"expires": monitor_every.total_seconds()},
        },
        "drift-check": {
            "task": names.CHECK_DRIFT,
            "schedule": drift_every,
            "options": {"expires": drift_every.total_seconds()},
        },
        "metrics-snapshot": {
            "task": names.SNAPSHOT_METRICS,
            "schedule": snapshot_every,
            "options": {"expires": snapshot_every.total_seconds()},
        },
        "requeue-stalled-jobs": {
            "task": names.REQUEUE_STALLED_JOBS,
            "schedule": stall_check,
            "options": {"expires": stall_check.total_seconds()},
        },
        "remove-old-files": {
            "task": names.REMOVE_OLD_FILES,
            "schedule": timedelta(hours=1),
            "options": {"expires": 3000},
        },
    }
    if settings.retrain_cron:
        minute, hour, day_of_month, month, day_of_week = settings.retrain_cron.split()
        plan["retrain-scheduled"] = {
            "task": names.SCHEDULED_RETRAIN,
            "schedule": crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                                month_of_year=month, day_of_week=day_of_week),
        }  # fmt: skip
    return plan
