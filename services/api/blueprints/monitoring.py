"""Live metrics and drift of a model: the current window, its history, the drift
reports, the retraining policy's decision. The root routes are the default model's."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request

from common.errors import InvalidInputError
from common.models import catalog, registry
from common.monitoring import drift_checks, metrics, retraining_policy
from services.api import prometheus
from services.api import schemas as s
from services.api.database import get_session, get_session_factory
from services.api.declare import api
from services.api.models_scope import model_settings

bp = Blueprint("monitoring", __name__)
MODEL = "/models/<model_name:name>"


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
@bp.get(f"{MODEL}/metrics")
@api("Live metrics of the current window", s.MetricsOut, errors=(400, 404),
     tags=("monitoring",),
     query=(("window_minutes", "number"), ("model_version", "integer")))  # fmt: skip
def current_metrics(name: str | None = None) -> dict[str, Any]:
    """The last `window_minutes` (default from settings): volume, latency, accuracy
    (or a regressor's errors); of every version, or of one `model_version`."""
    scoped = model_settings(name)
    minutes = _number("window_minutes", scoped.metrics_window_minutes, 7 * 24 * 60)
    session = get_session()
    number = int(_number("model_version", 0, 10**6, whole=True))
    version = registry.get_version(session, scoped, number) if number else None
    task = catalog.get_model(session, scoped.model_name).task
    return metrics.compute_window_metrics(
        session, scoped.model_name, minutes=minutes, version=version, task=task
    )


@bp.get("/metrics/history")
@bp.get(f"{MODEL}/metrics/history")
@api("Metrics over time, from the per-minute rollups", s.MetricsHistoryOut,
     errors=(400, 404), tags=("monitoring",), query=(("hours", "number"),))  # fmt: skip
def metrics_history(name: str | None = None) -> dict[str, Any]:
    """The last `hours` (default 24) in at most 360 buckets, oldest first, each with
    the figures of its own minutes."""
    scoped = model_settings(name)
    hours = _number("hours", 24, 24 * 90)
    session = get_session()
    task = catalog.get_model(session, scoped.model_name).task
    snapshots = metrics.metric_history(session, scoped.model_name, hours, task)
    return {"model": scoped.model_name, "hours": hours, "snapshots": snapshots}


@bp.get("/drift")
@bp.get(f"{MODEL}/drift")
@api("The latest drift report", s.DriftOut, errors=(404,), tags=("monitoring",))
def latest_drift(name: str | None = None) -> dict[str, Any]:
    """The latest drift report, per feature (404 before the first check)."""
    scoped = model_settings(name)
    return drift_checks.latest_drift_report(get_session(), scoped.model_name)


@bp.get("/drift/history")
@bp.get(f"{MODEL}/drift/history")
@api("Recent drift checks", s.DriftHistoryOut, errors=(400, 404),
     tags=("monitoring",), query=(("limit", "number"),))  # fmt: skip
def drift_history(name: str | None = None) -> dict[str, Any]:
    """Summaries of the last `limit` drift checks (default 100), oldest first."""
    scoped = model_settings(name)
    limit = int(_number("limit", 100, 1000))
    checks = drift_checks.drift_history(get_session(), scoped.model_name, limit)
    return {"model": scoped.model_name, "checks": checks}


@bp.get("/retraining")
@bp.get(f"{MODEL}/retraining")
@api("The retraining policy's last decision", s.RetrainingOut, errors=(404,),
     tags=("monitoring",))  # fmt: skip
def retraining_state(name: str | None = None) -> dict[str, Any]:
    """The retraining policy: its last decision, why, and when it may act next."""
    return retraining_policy.policy_state(get_session(), model_settings(name))


@bp.get("/metrics/prometheus")
@api("Prometheus text format", s.LiveOut, ok_media="text/plain", tags=("monitoring",))
def prometheus_metrics() -> Response:
    """Prometheus text format: requests by endpoint and status; per model (a `model`
    label) its champion, accuracy or errors, drift and alerts; jobs."""
    body = prometheus.render(current_app.extensions["settings"], get_session_factory())
    return Response(body, mimetype="text/plain", content_type=prometheus.CONTENT_TYPE)
