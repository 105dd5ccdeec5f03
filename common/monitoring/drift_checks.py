"""Periodic drift checks: the champion's recent inputs against its reference profile,
stored as reports for `GET /drift` and the charts."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.clock import to_iso
from common.config import Settings
from common.errors import NotFoundError
from common.models import registry
from common.monitoring.drift import check_drift
from common.rollouts.arms import not_shadow
from common.storage.tables import DriftReport, PredictionLog

log = logging.getLogger(__name__)


def recent_inputs(
    session: Session, model_version_id: int, rows: int
) -> tuple[pd.DataFrame, pd.Series]:
    """The last `rows` answered inputs of one version, and their predictions."""
    logged = session.execute(
        select(PredictionLog.features, PredictionLog.prediction)
        .where(PredictionLog.model_version_id == model_version_id,
               PredictionLog.status_code == 200,
               not_shadow(PredictionLog.arm))  # a shadow row keeps no features
        .order_by(PredictionLog.id.desc())
        .limit(rows)
    ).all()  # fmt: skip
    frame = pd.DataFrame([features for features, _ in logged])
    return frame, pd.Series([prediction for _, prediction in logged], dtype=object)


def run_drift_check(session: Session, settings: Settings) -> DriftReport:
    """Check the champion's recent inputs and store the report.

    Raises
    ------
    ModelNotReadyError
        There is no champion yet.
    """
    version = registry.get_champion(session, settings).model_version
    frame, predictions = recent_inputs(session, version.id, settings.drift_window_rows)
    missing = [f for f in version.feature_names if f not in frame.columns]
    for name in missing:  # an empty window has no columns at all
        frame[name] = pd.Series(dtype=object)
    report = check_drift(version.reference_profile, frame[version.feature_names],
                         predictions, settings)  # fmt: skip
    report["model_version"] = version.version
    report["model"] = settings.model_name
    row = DriftReport(
        model=settings.model_name,
        model_version_id=version.id,
        status=report["status"],
        window_size=report["window_size"],
        dataset_drift=bool(report["dataset_drift"]),
        drift_share=report["drift_share"],
        report=report,
    )
    session.add(row)
    session.flush()
    log.info("drift check version=%d status=%s share=%s", version.version,
             report["status"], report["drift_share"])  # fmt: skip
    return row


def drift_report_out(row: DriftReport) -> dict[str, Any]:
    return {"id": row.id, "checked_at": to_iso(row.created_at), **row.report}


def latest_drift_report(session: Session, model: str) -> dict[str, Any]:
    """Raises `NotFoundError` before the model's first check."""
    row = session.scalar(
        select(DriftReport).where(DriftReport.model == model)
        .order_by(DriftReport.id.desc()).limit(1)
    )  # fmt: skip
    if row is None:
        raise NotFoundError(f"no drift check of model {model!r} has run yet")
    return drift_report_out(row)


def drift_history(session: Session, model: str, limit: int) -> list[dict[str, Any]]:
    """Summaries of the model's last `limit` checks, oldest first."""
    rows = session.scalars(
        select(DriftReport).where(DriftReport.model == model)
        .order_by(DriftReport.id.desc()).limit(limit)
    ).all()  # fmt: skip
    return [
        {
            "id": r.id,
            "checked_at": to_iso(r.created_at),
            "status": r.status,
            "window_size": r.window_size,
            "drift_share": r.drift_share,
            "dataset_drift": r.dataset_drift,
            "drifted_features": r.report.get("drifted_features", []),
            "psi": {n: f["psi"] for n, f in r.report.get("features", {}).items()},
            "thresholds": r.report.get("thresholds"),
        }
        for r in reversed(rows)
    ]
