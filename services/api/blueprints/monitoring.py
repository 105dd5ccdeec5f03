"""Live metrics and drift: the current window, its history, the drift reports."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from common.errors import InvalidInputError
from common.models import registry
from common.monitoring import drift_checks, metrics, retraining_policy
from services.api import prometheus
from services.api.database import get_session, get_session_factory

bp = Blueprint("monitoring", __name__)


def _number(name: str, default: float, most: float, whole: bool = False) -> float:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= most or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise InvalidInputError(
            f"{name} must be {kind} in (0, {most:g}]",
            problems=[{"field": name, "code": "out_of_range", "message": raw[:50]}],
        )
    return value


@bp.get("/metrics")
def current_metrics() -> dict[str, Any]:
    """The last `window_minutes` (default from settings): volume, latency, accuracy;
    of every version, or of one `model_version`."""
    settings = current_app.extensions["settings"]
    minutes = _number("window_minutes", settings.metrics_window_minutes, 7 * 24 * 60)
    session = get_session()
    number = int(_number("model_version", 0, 10**6, whole=True))
    version = registry.get_version(session, settings, number) if number else None
    return metrics.compute_window_metrics(session, minutes=minutes, version=version)


@bp.get("/metrics/history")
def metrics_history() -> dict[str, Any]:
    """Stored snapshots of the last `hours` (default 24), oldest first."""
    hours = _number("hours", 24, 24 * 90)
    return {"hours": hours, "snapshots": metrics.metric_history(get_session(), hours)}


@bp.get("/drift")
def latest_drift() -> dict[str, Any]:
    """The latest drift report, per feature (404 before the first check)."""
    return drift_checks.latest_drift_report(get_session())


@bp.get("/drift/history")
def drift_history() -> dict[str, Any]:
    """Summaries of the last `limit` drift checks (default 100), oldest first."""
    limit = int(_number("limit", 100, 1000))
    return {"checks": drift_checks.drift_history(get_session(), limit)}


@bp.get("/retraining")
def retraining_state() -> dict[str, Any]:
    """The retraining policy: its last decision, why, and when it may act next."""
    settings = current_app.extensions["settings"]
    return retraining_policy.policy_state(get_session(), settings)


@bp.get("/metrics/prometheus")
def prometheus_metrics() -> Response:
    """Prometheus text format: requests by endpoint and status, the model, accuracy,
    drift, alerts and jobs."""
    body = prometheus.render(current_app.extensions["settings"], get_session_factory())
    return Response(body, mimetype="text/plain", content_type=prometheus.CONTENT_TYPE)
