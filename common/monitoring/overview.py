"""One line per model for the models page and `GET /models`: its champion, traffic,
accuracy or error, drift state and open alerts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.clock import to_iso
from common.config import Settings
from common.models import catalog
from common.monitoring.metrics import compute_window_metrics
from common.storage.tables import Champion, ModelVersion


def model_summaries(session: Session, settings: Settings) -> list[dict[str, Any]]:
    """Every model, by name."""
    champions = dict(
        session.execute(
            select(Champion.name, ModelVersion.version).join(
                ModelVersion, ModelVersion.id == Champion.model_version_id
            )
        ).all()
    )
    counts = dict(
        session.execute(
            select(ModelVersion.name, func.count()).group_by(ModelVersion.name)
        ).all()
    )
    out = []
    for model in catalog.list_models(session):
        minutes = settings.for_model(model.name).metrics_window_minutes
        window = compute_window_metrics(
            session, model.name, minutes=minutes, task=model.task
        )
        out.append({
            "name": model.name,
            "task": model.task,
            "description": model.description,
            "created_at": to_iso(model.created_at),
            "champion_version": champions.get(model.name),
            "versions": counts.get(model.name, 0),
            "traffic_per_min": window["request_rate_per_min"],
            "prediction_count": window["prediction_count"],
            "accuracy": window["accuracy"],
            "mae": window.get("mae"),
            "drift": (window["drift"] or {}).get("status"),
            "open_alerts": window["open_alerts"],
        })  # fmt: skip
    return out
