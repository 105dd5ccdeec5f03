"""The periodic plan, as data. Beat enqueues fan-out tasks only: each fans out into
one task per model (services/worker/tasks/monitoring.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.schedules import crontab

from common import task_names as names
from common.config import Settings


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Return beat's schedule for `settings`."""
    stall_check = timedelta(seconds=max(5, settings.job_stall_seconds // 3))
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
        "rollouts-monitor": {
            "task": names.MONITOR_ROLLOUTS,
            "schedule": monitor_every,
            "options": {"expires": monitor_every.total_seconds()},
        },
        "labels-count": {
            "task": names.COUNT_LABELS,
            "schedule": monitor_every,
            "options": {"expires": monitor_every.total_seconds()},
        },
        "requeue-stalled-jobs": {
            "task": names.REQUEUE_STALLED_JOBS,
            "schedule": stall_check,
            "options": {"expires": stall_check.total_seconds()},
        },
        "prune-old-rows": {
            "task": names.PRUNE_OLD_ROWS,
            "schedule": timedelta(seconds=settings.prune_seconds),
            "options": {"expires": settings.prune_seconds},
        },
        "remove-old-files": {
            "task": names.REMOVE_OLD_FILES,
            "schedule": timedelta(hours=1),
            "options": {"expires": 3000},
        },
    }
    if settings.retrain_cron:  # every model without a cron of its own
        plan["retrain-scheduled"] = {
            "task": names.SCHEDULED_RETRAIN,
            "schedule": _crontab(settings.retrain_cron),
        }
    for name in settings.models:
        cron = settings.for_model(name).retrain_cron
        if cron and cron != settings.retrain_cron:
            plan[f"retrain-scheduled-{name}"] = {
                "task": names.SCHEDULED_RETRAIN,
                "schedule": _crontab(cron),
                "args": (name,),
            }
    return plan


def _crontab(line: str) -> crontab:
    minute, hour, day_of_month, month, day_of_week = line.split()
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                   month_of_year=month, day_of_week=day_of_week)  # fmt: skip
