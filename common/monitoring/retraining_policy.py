"""When to retrain by itself: dataset drift in K of the last N checks, or the
champion's live accuracy under a floor with enough labels; and on a schedule. Never
while a retrain is queued or running. Every automatic job records its trigger and
the evidence, and every evaluation records its decision (`GET /retraining`).

A triggered retrain trains on the labelled predictions since the change was first
seen: the first drifted check, or the point where the champion's accuracy fell (a
change point in its labelled answers). That is the world the next model must fit.
Until enough of them carry labels (`retrain_recent_rows`) the policy waits rather
than retrain on the old world or on a handful of rows.

After an automatic retrain the policy waits: the full cooldown when the champion was
seen healthy since (the retrain fixed it: a new problem is a new episode), else a
short retry backoff that doubles per attempt, so a retrain that did not fix the
problem is followed by another within minutes, not an hour.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.clock import as_utc, from_iso, to_iso, utcnow
from common.config import Settings
from common.jobs import tracker
from common.models import registry
from common.monitoring.accuracy_change import find_accuracy_drop
from common.monitoring.metrics import compute_window_metrics
from common.rollouts import lifecycle
from common.storage import repositories as repo
from common.storage.tables import DriftReport, Job, RetrainingState

log = logging.getLogger(__name__)
AUTO_PREFIX = "automatic: "
FALL_SIDE_LABELS = 20  # labels on each side to see a fall (not to train on)


@dataclass
class Assessment:
    """What the rules say of the champion now: a trigger, or why there is none."""

    trigger: dict[str, Any] | None = None
    waiting: list[str] = field(default_factory=list)  # evidence still to come
    healthy: bool = False  # every rule holds, on evidence about this champion


@dataclass(frozen=True)
class RuleView:
    """One rule's word on the champion."""

    trigger: dict[str, Any] | None = None
    waiting: str | None = None  # what it waits for before it can say more
    holds: bool = False  # evidence about this champion shows the rule holds
    decides: bool = False  # the drift rule saw drift: the accuracy rule stands back


def assess(session: Session, settings: Settings) -> Assessment:
    """The reason to retrain now, with its evidence, or what the rules wait for."""
    seen = Assessment()
    champion = registry.find_champion(session, settings)
    if champion is None:
        seen.waiting.append("no champion yet")
        return seen
    views = []
    if settings.retrain_on_drift:
        views.append(_drift_rule(session, settings, champion.model_version_id))
    # While the inputs drift the drift rule decides: the accuracy window would mix
    # the old world with the new.
    classifier = champion.model_version.task == "classification"
    if (settings.retrain_accuracy_floor > 0 and classifier
            and not (views and views[0].decides)):  # fmt: skip
        views.append(_accuracy_rule(session, settings, champion))
    seen.trigger = next((v.trigger for v in views if v.trigger), None)
    seen.waiting = [v.waiting for v in views if v.waiting]
    seen.healthy = all(v.holds for v in views)
    return seen


def _no_drift_evidence(session: Session, settings: Settings, champion_id: int) -> str:
    last = session.scalar(
        select(DriftReport).where(DriftReport.model_version_id == champion_id)
        .order_by(DriftReport.id.desc()).limit(1)
    )  # fmt: skip
    if last is None:
        return "no drift check of this champion yet"
    return (
        "too few recent inputs for a drift check of this champion "
        f"({last.window_size} of {settings.drift_min_rows} at the last one)"
    )


def _drift_rule(session: Session, settings: Settings, champion_id: int) -> RuleView:
    """The drift trigger; else what it waits for (a first check, drift seen fewer
    than K times, or too few labels since it began)."""
    checks = session.scalars(
        select(DriftReport)
        .where(DriftReport.model_version_id == champion_id,
               DriftReport.status != "insufficient_data")
        .order_by(DriftReport.id.desc())
        .limit(settings.retrain_drift_n)
    ).all()  # fmt: skip
    drifted = [c for c in checks if c.dataset_drift]
    k, n = settings.retrain_drift_k, settings.retrain_drift_n
    if not checks:
        return RuleView(waiting=_no_drift_evidence(session, settings, champion_id))
    if not drifted:
        return RuleView(holds=True)  # its latest checks are clean
    if len(checks) < n or len(drifted) < k:
        return RuleView(waiting=f"dataset drift in {len(drifted)} of the last "
                        f"{len(checks)} checks; it retrains at {k} of {n}",
                        decides=True)  # fmt: skip
    # From the first drifted check on, the inputs are the new world's; rows before it
    # may be the old world's (its window straddled the change), so they stay out.
    since = as_utc(min(c.created_at for c in drifted))
    labelled = repo.count_labelled_since(session, settings.model_name, since)
    if labelled < settings.retrain_recent_rows:
        wanted = _labels_wanted("drift", since, labelled, settings)
        return RuleView(waiting=wanted, decides=True)
    features = sorted(
        {f for c in drifted for f in c.report.get("drifted_features", [])}
    )
    return RuleView(trigger={
        "trigger": "drift",
        "since": to_iso(since),
        "summary": f"dataset drift in {len(drifted)} of the last {len(checks)} checks "
        f"({', '.join(features)})",
        "evidence": {"checks": [c.id for c in checks], "drifted_features": features,
                     "drift_share": [c.drift_share for c in checks],
                     "labelled_since": labelled},
    }, decides=True)  # fmt: skip


def _accuracy_rule(session: Session, settings: Settings, champion: Any) -> RuleView:
    """The accuracy trigger; else what it waits for. It holds when enough labels show
    the champion above the floor, or when no feedback flows at all."""
    floor = settings.retrain_accuracy_floor
    window = compute_window_metrics(
        session, settings.model_name, minutes=settings.metrics_window_minutes,
        version=champion.model_version,
    )  # fmt: skip
    labels = window["labeled_count"]
    if labels < settings.retrain_min_labels:
        flowing = labels > 0 or _any_labels_since(
            session, settings.model_name, window["window_start"]
        )
        wanted = f"{labels} of {settings.retrain_min_labels} labels on version " \
            f"{champion.model_version.version} to judge its accuracy"  # fmt: skip
        return RuleView(waiting=wanted) if flowing else RuleView(holds=True)
    start, needed = window["window_start"], settings.retrain_recent_rows
    drop = find_accuracy_drop(session, champion.model_version_id, start,
                              FALL_SIDE_LABELS)  # fmt: skip
    if drop is not None and drop.after < floor:  # it fell: judge what came after
        since, accuracy, count = drop.since, drop.after, drop.labels_after
    elif window["accuracy"] < floor:  # below the floor all along
        drop, since, accuracy, count = None, start, window["accuracy"], labels
    else:
        return RuleView(holds=True)
    if count < needed:
        what = "the accuracy drop" if drop else "accuracy under the floor"
        return RuleView(waiting=_labels_wanted(what, since, count, settings))
    fell = f" (it fell from {drop.before:.3f} at {drop.since})" if drop else ""
    return RuleView(trigger={
        "trigger": "accuracy",
        "since": since,
        "summary": f"live accuracy {accuracy:.3f} under {floor} on {count} "
        f"labels{fell}",
        "evidence": {"accuracy": accuracy, "accuracy_ci": window["accuracy_ci"],
                     "labeled_count": count, "floor": floor,
                     "accuracy_before": drop.before if drop else None,
                     "window_accuracy": window["accuracy"]},
    })  # fmt: skip


def _any_labels_since(session: Session, model: str, since: str) -> bool:
    return repo.count_labelled_since(session, model, from_iso(since)) > 0


def _labels_wanted(what: str, since: datetime | str, have: int, s: Settings) -> str:
    at = since if isinstance(since, str) else to_iso(since)
    return f"{what} since {at}: {have} of {s.retrain_recent_rows} labels to train on"


def next_allowed_at(
    session: Session, settings: Settings, last_healthy_at: datetime | None
) -> tuple[datetime | None, str]:
    """When the next automatic retrain may start, and why then."""
    automatic = (
        (Job.kind == "retrain") & (Job.model == settings.model_name)
        & Job.reason.startswith(AUTO_PREFIX)
    )  # fmt: skip
    last = session.scalar(select(Job).where(automatic).order_by(Job.id.desc()).limit(1))
    if last is None:
        return None, "no automatic retrain yet"
    cooldown = timedelta(minutes=settings.retrain_cooldown_minutes)
    ended = as_utc(last.finished_at or last.created_at)
    if last_healthy_at is not None and as_utc(last_healthy_at) > ended:
        return as_utc(last.created_at) + cooldown, (
            f"job {last.id} fixed the last problem; the cooldown "
            f"({settings.retrain_cooldown_minutes} min) runs from its start"
        )
    query = select(func.count(Job.id)).where(automatic)
    if last_healthy_at is not None:
        query = query.where(Job.created_at > last_healthy_at)
    attempts = session.scalar(query) or 1
    backoff = min(timedelta(minutes=settings.retrain_retry_minutes)
                  * 2 ** (attempts - 1), cooldown)  # fmt: skip
    outcome = (last.result or {}).get("outcome") or last.state
    return ended + backoff, (
        f"job {last.id} ({outcome}) has not fixed it: attempt {attempts + 1} after "
        f"a backoff of {backoff.total_seconds() / 60:g} min"
    )


def start_retrain(
    session: Session,
    model: str,
    trigger: dict[str, Any],
    enqueue: Callable[[int], str],
) -> Job | None:
    """Submit an automatic retrain of `model`; None when one is already queued or
    running."""
    params = {"trigger": trigger["trigger"], "evidence": trigger["evidence"]}
    if trigger.get("since"):  # drift or accuracy: train on the new world only
        params["since"] = trigger["since"]
    try:
        job = tracker.submit_job(session, "retrain", params,
                                 AUTO_PREFIX + trigger["summary"], enqueue,
                                 model=model)  # fmt: skip
    except tracker.JobConflictError:
        session.rollback()
        return None
    log.info("automatic retrain model=%s job=%d: %s", model, job.id,
             trigger["summary"])  # fmt: skip
    return job


def apply_policy(
    session: Session, settings: Settings, enqueue: Callable[[int], str]
) -> Job | None:
    """Start a retrain when a rule fires and the last attempt's wait is over; record
    the decision either way."""
    now = utcnow()
    state = _state(session, settings)
    active = tracker.find_active(session, "retrain", settings.model_name)
    if active is not None:
        _decide(state, "busy", f"retrain job {active.id} is {active.state}", None)
        return None
    rollout = lifecycle.find_running(session, settings.model_name)
    if rollout is not None:  # its challenger is being judged: let it finish
        _decide(state, "busy", f"rollout {rollout.id} is judging version "
                f"{rollout.challenger.version} ({rollout.mode})", None)  # fmt: skip
        return None
    seen = assess(session, settings)
    if seen.healthy:
        state.last_healthy_at = now
    if seen.trigger is None:
        if seen.healthy:
            _decide(state, "healthy", "every rule holds for the champion" if (
                settings.retrain_on_drift or settings.retrain_accuracy_floor > 0
            ) else "no automatic rule is on", None)  # fmt: skip
        else:
            _decide(state, "watching", "; ".join(seen.waiting), None)
        return None
    allowed_at, why = next_allowed_at(session, settings, state.last_healthy_at)
    if allowed_at is not None and now < allowed_at:
        _decide(state, "waiting", f"{seen.trigger['summary']}; {why}", allowed_at)
        return None
    job = start_retrain(session, settings.model_name, seen.trigger, enqueue)
    if job is not None:
        _decide(state, "retrain", f"started job {job.id}: {seen.trigger['summary']}",
                None, job_id=job.id)  # fmt: skip
    return job


def _state(session: Session, settings: Settings) -> RetrainingState:
    state = session.get(RetrainingState, settings.model_name)
    if state is not None:
        return state
    # Never seen without a reason: a retrain it starts commits before the decision.
    state = RetrainingState(name=settings.model_name, decision="not_evaluated",
                            reason="the policy is evaluating this model for the "
                            "first time", decided_at=utcnow(), details={})  # fmt: skip
    try:
        with session.begin_nested():  # two workers may evaluate at once
            session.add(state)
    except IntegrityError:
        state = session.get(RetrainingState, settings.model_name)
        assert state is not None  # the other worker's row
    return state


def _decide(
    state: RetrainingState,
    decision: str,
    reason: str,
    next_action_at: datetime | None,
    **details: Any,
) -> None:
    if (state.decision, state.reason) != (decision, reason):
        log.info("retraining policy of %s: %s: %s", state.name, decision, reason)
    state.decision, state.reason = decision, reason
    state.decided_at, state.next_action_at = utcnow(), next_action_at
    state.details = details


def policy_state(session: Session, settings: Settings) -> dict[str, Any]:
    """The last decision, why, and when the policy may act next (`GET /retraining`)."""
    state = session.get(RetrainingState, settings.model_name)
    return {
        "model": settings.model_name,
        "decision": state.decision if state else "not_evaluated",
        "reason": state.reason if state else "the policy has not run yet",
        "decided_at": to_iso(state.decided_at) if state else None,
        "next_action_at": to_iso(state.next_action_at) if state else None,
        "last_healthy_at": to_iso(state.last_healthy_at) if state else None,
        "job_id": (state.details or {}).get("job_id") if state else None,
        "rules": {
            "on_drift": settings.retrain_on_drift,
            "drift_k_of_n": [settings.retrain_drift_k, settings.retrain_drift_n],
            "accuracy_floor": settings.retrain_accuracy_floor,
            "min_labels": settings.retrain_min_labels,
            "recent_rows": settings.retrain_recent_rows,
            "cooldown_minutes": settings.retrain_cooldown_minutes,
            "retry_minutes": settings.retrain_retry_minutes,
        },
    }
