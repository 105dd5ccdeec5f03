"""Alerts from rules: at most one open per rule and subject, a cooldown after one
resolves, resolution when the condition clears, acknowledgement by a person.

Every opened alert is delivered to the dashboard (a delivery row); webhooks come with
the monitoring issue's delivery work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.clock import from_iso, to_iso, utcnow
from common.errors import ConflictError, NotFoundError
from common.monitoring.alert_rules import AlertRule
from common.monitoring.metrics import compute_window_metrics
from common.storage import repositories as repo
from common.storage.tables import Alert, AlertDelivery, DriftReport, ModelVersion

log = logging.getLogger(__name__)
ACTIVE = ("open", "acknowledged")


@dataclass(frozen=True)
class Observation:
    """A rule's value for one subject, and how many samples it rests on."""

    subject: str
    value: float | None
    samples: int


# Metrics judged on the champion's own answers when it is known.
CHAMPION_METRICS = ("accuracy", "mae", "rmse")


def observe(
    session: Session,
    model: str,
    rule: AlertRule,
    cache: dict[tuple[int, int | None], dict[str, Any]],
    champion: ModelVersion | None = None,
) -> list[Observation]:
    """The rule's current values for `model` (one per subject). Accuracy, errors and
    drift are those of the champion when it is given: a new champion is not blamed
    for its predecessor."""
    if rule.metric in ("drift_share", "feature_psi"):
        return _drift_observations(session, model, rule, champion)
    scope = champion if rule.metric in CHAMPION_METRICS else None
    key = (rule.window_minutes, scope.id if scope else None)
    if key not in cache:
        cache[key] = compute_window_metrics(
            session, model, minutes=rule.window_minutes, version=scope,
            task=champion.task if champion else "classification",
        )  # fmt: skip
    m = cache[key]
    if rule.metric == "volume_drop":
        return [_volume_drop(session, model, rule, m)]
    value, samples = {
        "accuracy": (m["accuracy"], m["labeled_count"]),
        "mae": (m.get("mae"), m["labeled_count"]),
        "rmse": (m.get("rmse"), m["labeled_count"]),
        "error_rate": (m["error_rate"], m["request_count"]),
        "latency_p99_ms": (m["latency_ms"]["p99"], m["request_count"]),
    }[rule.metric]
    return [Observation("model", value, samples)]


def _volume_drop(
    session: Session, model: str, rule: AlertRule, current: dict[str, Any]
) -> Observation:
    """How far requests fell against the window just before (1.0: none at all)."""
    end = from_iso(current["window_start"])
    before = compute_window_metrics(
        session, model, minutes=rule.window_minutes, until=end
    )
    previous = before["request_count"]
    drop = 1 - current["request_count"] / previous if previous else None
    return Observation("traffic", drop, previous)


def _drift_observations(
    session: Session, model: str, rule: AlertRule, champion: ModelVersion | None
) -> list[Observation]:
    query = (
        select(DriftReport).where(DriftReport.model == model)
        .order_by(DriftReport.id.desc()).limit(1)
    )  # fmt: skip
    if champion is not None:
        query = query.where(DriftReport.model_version_id == champion.id)
    report = session.scalar(query)
    if report is None or report.status == "insufficient_data":
        return []
    if rule.metric == "drift_share":
        return [Observation("dataset", report.drift_share, report.window_size)]
    return [
        Observation(f"feature:{name}", feature["psi"] if feature["drifted"] else 0.0,
                    report.window_size)
        for name, feature in report.report["features"].items()
    ]  # fmt: skip


def evaluate_alerts(
    session: Session,
    model: str,
    rules: Sequence[AlertRule],
    now: datetime | None = None,
    champion: ModelVersion | None = None,
) -> dict[str, list[int]]:
    """Open, refresh or resolve `model`'s alerts for every rule; returns the ids it
    changed."""
    now = now or utcnow()
    changed: dict[str, list[int]] = {"opened": [], "resolved": []}
    cache: dict[tuple[int, int | None], dict[str, Any]] = {}
    for rule in rules:
        for seen in observe(session, model, rule, cache, champion):
            if seen.value is None or seen.samples < rule.min_samples:
                continue  # not enough evidence either way: nothing changes
            active = _active(session, model, rule.name, seen.subject)
            if rule.holds(seen.value):
                if active is not None:
                    _refresh(active, rule, seen, now)
                elif not _cooling_down(session, model, rule, seen.subject, now):
                    alert = _open(session, model, rule, seen, now)
                    changed["opened"].append(alert.id)
            elif active is not None:
                active.state, active.resolved_at = "resolved", now
                changed["resolved"].append(active.id)
                log.info("alert resolved id=%d rule=%s", active.id, rule.name)
    session.flush()
    return changed


def _active(session: Session, model: str, rule: str, subject: str) -> Alert | None:
    return session.scalar(
        select(Alert).where(Alert.model == model, Alert.rule == rule,
                            Alert.subject == subject, Alert.state.in_(ACTIVE))
    )  # fmt: skip


def _cooling_down(
    session: Session, model: str, rule: AlertRule, subject: str, now: datetime
) -> bool:
    since = now - timedelta(minutes=rule.cooldown_minutes)
    return session.scalar(
        select(Alert.id).where(Alert.model == model, Alert.rule == rule.name,
                               Alert.subject == subject, Alert.resolved_at >= since)
        .limit(1)
    ) is not None  # fmt: skip


def _open(
    session: Session, model: str, rule: AlertRule, seen: Observation, now: datetime
) -> Alert:
    alert = Alert(
        model=model,
        rule=rule.name,
        subject=seen.subject,
        severity=rule.severity,
        state="open",
        message=_message(model, rule, seen, seen.value, seen.samples),
        value=seen.value,
        threshold=rule.threshold,
        details={"metric": rule.metric, "comparator": rule.comparator,
                 "samples": seen.samples, "window_minutes": rule.window_minutes,
                 "value_at_open": seen.value, "samples_at_open": seen.samples},
        opened_at=now,
        last_seen_at=now,
    )  # fmt: skip
    return _insert(session, alert)


def _refresh(alert: Alert, rule: AlertRule, seen: Observation, now: datetime) -> None:
    """The rule still holds: `value` becomes the latest, and the message names both
    it and the value at opening, so the two never disagree."""
    opened = alert.details.get("value_at_open", alert.value)
    opened_samples = alert.details.get("samples_at_open", seen.samples)
    alert.last_seen_at, alert.value = now, seen.value
    alert.message = _message(alert.model, rule, seen, opened, opened_samples)
    alert.details = {
        **alert.details,
        "samples": seen.samples,
        "value_at_open": opened,
        "samples_at_open": opened_samples,
    }


def _message(
    model: str | None,
    rule: AlertRule,
    seen: Observation,
    opened: float | None,
    opened_samples: int,
) -> str:
    condition = f"{rule.comparator} {rule.threshold:g}"
    of = model if seen.subject == "model" else f"{model} {seen.subject}"
    text = (
        f"{rule.metric} of {of} was {_figure(opened)} at opening "
        f"({condition}) over {opened_samples} samples"
    )
    if opened_samples != seen.samples or opened != seen.value:
        text += f"; latest {_figure(seen.value)} over {seen.samples} samples"
    return text


def _figure(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.4g}"


def _insert(session: Session, alert: Alert) -> Alert:
    """Store a new alert and its dashboard delivery."""
    session.add(alert)
    session.flush()
    session.add(
        AlertDelivery(alert_id=alert.id, channel="dashboard", status="delivered")
    )
    log.warning(
        "alert opened id=%d rule=%s subject=%s", alert.id, alert.rule, alert.subject
    )
    return alert


def open_event_alert(
    session: Session,
    model: str,
    rule: str,
    subject: str,
    *,
    severity: str,
    message: str,
    **details: Any,
) -> Alert | None:
    """Open an alert for something that happened (not a threshold rule), such as a
    model artifact refused at load. None when one is already open for the rule and
    subject: the database allows one, so processes racing here open one between them.
    """
    if _active(session, model, rule, subject) is not None:
        return None
    now = utcnow()
    alert = Alert(
        model=model, rule=rule, subject=subject, severity=severity, state="open",
        message=message, details=details, opened_at=now, last_seen_at=now,
    )  # fmt: skip
    try:
        with session.begin_nested():
            _insert(session, alert)
    except IntegrityError:
        return None  # another process opened it first
    return alert


def artifact_refused(
    session: Session, model: str, version: int, error: str, serving: int | None
) -> Alert | None:
    """The alert for a version whose artifact was refused (missing, truncated,
    replaced): at promotion, or when an API process went to load it."""
    return open_event_alert(
        session, model, "artifact_refused", f"version:{version}", severity="critical",
        message=f"version {version} of {model} was refused: {error}; "
        f"still serving version {serving}",
        version=version, serving_version=serving, error=error,
    )  # fmt: skip


def artifact_accepted(session: Session, model: str, version: int) -> Alert | None:
    """Resolve the `artifact_refused` alert of a version whose artifact has now
    passed its check (it was restored, and promoted or loaded); None if none was
    active."""
    alert = _active(session, model, "artifact_refused", f"version:{version}")
    if alert is not None:
        alert.state, alert.resolved_at = "resolved", utcnow()
        log.info("alert resolved id=%d rule=artifact_refused", alert.id)
    return alert


def acknowledge(session: Session, alert_id: int, actor: str) -> Alert:
    """Mark an open alert as seen; it still resolves by itself.

    Raises
    ------
    NotFoundError
        Unknown alert.
    ConflictError
        The alert is already resolved.
    """
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFoundError(f"alert {alert_id} not found", alert_id=alert_id)
    if alert.state == "resolved":
        raise ConflictError(f"alert {alert_id} is already resolved", alert_id=alert_id)
    if alert.state == "open":
        alert.state, alert.acknowledged_at = "acknowledged", utcnow()
        repo.add_audit_event(session, "alert_ack", "alert", alert_id, actor=actor,
                             model=alert.model)  # fmt: skip
    session.flush()
    return alert


def list_alerts(
    session: Session, state: str | None, limit: int, model: str | None = None
) -> Sequence[Alert]:
    query = select(Alert).order_by(Alert.id.desc()).limit(limit)
    if state:
        query = query.where(Alert.state == state)
    if model:
        query = query.where(Alert.model == model)
    return session.scalars(query).all()


def alert_out(alert: Alert, deliveries: Sequence[AlertDelivery]) -> dict[str, Any]:
    return {
        "id": alert.id, "model": alert.model, "rule": alert.rule,
        "subject": alert.subject,
        "severity": alert.severity, "state": alert.state, "message": alert.message,
        "value": alert.value, "threshold": alert.threshold, "details": alert.details,
        "opened_at": to_iso(alert.opened_at),
        "last_seen_at": to_iso(alert.last_seen_at),
        "acknowledged_at": to_iso(alert.acknowledged_at),
        "resolved_at": to_iso(alert.resolved_at),
        "deliveries": [
            {"channel": d.channel, "attempt": d.attempt, "status": d.status,
             "status_code": d.status_code, "error": d.error,
             "at": to_iso(d.created_at)}
            for d in deliveries
        ],
    }  # fmt: skip


def deliveries_of(
    session: Session, alert_ids: list[int]
) -> dict[int, list[AlertDelivery]]:
    rows = session.scalars(
        select(AlertDelivery).where(AlertDelivery.alert_id.in_(alert_ids))
        .order_by(AlertDelivery.id)
    ).all()  # fmt: skip
    grouped: dict[int, list[AlertDelivery]] = {i: [] for i in alert_ids}
    for row in rows:
        grouped[row.alert_id].append(row)
    return grouped
