"""When to retrain by itself: dataset drift in K of the last N checks, or the
champion's live accuracy under a floor with enough labels; and on a schedule. Never
while a retrain is queued or running, and not again within the cooldown. Every
automatic job records its trigger and the evidence.

A triggered retrain trains on the labelled predictions since the change was first
seen (the first drifted check, or the start of the accuracy window): that is the
world the next model must fit. Until enough of them carry labels
(`retrain_min_labels`) the policy waits rather than retrain on the old world.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from common import jobs, registry
from common.clock import as_utc, to_iso, utcnow
from common.config import Settings
from common.metrics import compute_window_metrics
from common.retraining import count_labelled_since
from common.storage.tables import DriftReport, Job

log = logging.getLogger(__name__)
AUTO_PREFIX = "automatic: "


def find_trigger(session: Session, settings: Settings) -> dict[str, Any] | None:
    """The reason to retrain now, with its evidence, or None."""
    if settings.retrain_on_drift:
        trigger, waiting = _drift_trigger(session, settings)
        if trigger or waiting:  # while the inputs drift, the drift rule decides: the
            return trigger  # accuracy window would mix the old world with the new
    if settings.retrain_accuracy_floor > 0:
        return _accuracy_trigger(session, settings)
    return None


def _drift_trigger(
    session: Session, settings: Settings
) -> tuple[dict[str, Any] | None, bool]:
    """The drift trigger, or None and whether the drift rule is still deciding: drift
    seen in fewer than K checks, or in K but too few labels since it began."""
    champion = registry.find_champion(session, settings)
    if champion is None:
        return None, False
    checks = session.scalars(
        select(DriftReport)
        .where(DriftReport.model_version_id == champion.model_version_id,
               DriftReport.status != "insufficient_data")
        .order_by(DriftReport.id.desc())
        .limit(settings.retrain_drift_n)
    ).all()  # fmt: skip
    drifted = [c for c in checks if c.dataset_drift]
    if (
        len(checks) < settings.retrain_drift_n
        or len(drifted) < settings.retrain_drift_k
    ):
        return None, bool(drifted)  # drift seen but not yet K times: it decides
    # From the first drifted check on, the inputs are the new world's; rows before it
    # may be the old world's (its window straddled the change), so they stay out.
    since = as_utc(min(c.created_at for c in drifted))
    labelled = count_labelled_since(session, since)
    if labelled < settings.retrain_min_labels:
        log.info("drift seen; waiting for labels: %d of %d since %s", labelled,
                 settings.retrain_min_labels, to_iso(since))  # fmt: skip
        return None, True
    features = sorted(
        {f for c in drifted for f in c.report.get("drifted_features", [])}
    )
    return {
        "trigger": "drift",
        "since": to_iso(since),
        "summary": f"dataset drift in {len(drifted)} of the last {len(checks)} checks "
        f"({', '.join(features)})",
        "evidence": {"checks": [c.id for c in checks], "drifted_features": features,
                     "drift_share": [c.drift_share for c in checks],
                     "labelled_since": labelled},
    }, False  # fmt: skip


def _accuracy_trigger(session: Session, settings: Settings) -> dict[str, Any] | None:
    champion = registry.find_champion(session, settings)
    if champion is None:
        return None
    metrics = compute_window_metrics(
        session,
        minutes=settings.metrics_window_minutes,
        version=champion.model_version,
    )
    accuracy, labels = metrics["accuracy"], metrics["labeled_count"]
    if accuracy is None or labels < settings.retrain_min_labels:
        return None
    if accuracy >= settings.retrain_accuracy_floor:
        return None
    return {
        "trigger": "accuracy",
        "since": metrics["window_start"],
        "summary": f"live accuracy {accuracy:.3f} under "
        f"{settings.retrain_accuracy_floor} on {labels} labels",
        "evidence": {"accuracy": accuracy, "accuracy_ci": metrics["accuracy_ci"],
                     "labeled_count": labels, "floor": settings.retrain_accuracy_floor},
    }  # fmt: skip


def in_cooldown(session: Session, settings: Settings) -> bool:
    since = utcnow() - timedelta(minutes=settings.retrain_cooldown_minutes)
    return session.scalar(
        select(Job.id).where(Job.kind == "retrain", Job.reason.startswith(AUTO_PREFIX),
                             Job.created_at >= since).limit(1)
    ) is not None  # fmt: skip


def start_retrain(
    session: Session,
    trigger: dict[str, Any],
    enqueue: Callable[[int], str],
) -> Job | None:
    """Submit an automatic retrain; None when one is already queued or running."""
    params = {"trigger": trigger["trigger"], "evidence": trigger["evidence"]}
    if trigger.get("since"):  # drift or accuracy: train on the new world only
        params["since"] = trigger["since"]
    try:
        job = jobs.submit_job(session, "retrain", params,
                              AUTO_PREFIX + trigger["summary"], enqueue)  # fmt: skip
    except jobs.JobConflictError:
        session.rollback()
        return None
    log.info("automatic retrain job=%d: %s", job.id, trigger["summary"])
    return job


def apply_policy(
    session: Session, settings: Settings, enqueue: Callable[[int], str]
) -> Job | None:
    """Start a retrain when a rule fires and the cooldown allows it."""
    if jobs.find_active(session, "retrain") is not None or in_cooldown(
        session, settings
    ):
        return None
    trigger = find_trigger(session, settings)
    return start_retrain(session, trigger, enqueue) if trigger else None
