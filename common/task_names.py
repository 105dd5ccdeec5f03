"""Celery task names, shared by the API (which enqueues) and the worker (which runs)."""

from __future__ import annotations

RETRAIN_MODEL = "training.retrain_model"
SCORE_BATCH = "scoring.batch_score"
REMOVE_OLD_FILES = "maintenance.remove_old_files"
PRUNE_OLD_ROWS = "maintenance.prune_old_rows"
REQUEUE_STALLED_JOBS = "maintenance.requeue_stalled_jobs"
COUNT_LABELS = "monitoring.count_labels"
CHECK_DRIFT = "monitoring.check_drift"
EVALUATE_ALERTS = "monitoring.evaluate_alerts"
APPLY_RETRAINING_POLICY = "monitoring.apply_retraining_policy"
SCHEDULED_RETRAIN = "monitoring.scheduled_retrain"
MONITOR_ROLLOUTS = "monitoring.monitor_rollouts"
DELIVER_ALERT = "alerts.deliver_alert"
RESET_DEMO = "demo.reset_demo"
