from __future__ import annotations

import uuid

import pytest

from common.data import synthetic
from common.errors import ModelNotReadyError, NotFoundError
from common.models import registry
from common.monitoring.drift_checks import (
    drift_history,
    latest_drift_report,
    run_drift_check,
)
from common.monitoring.metrics import compute_window_metrics
from common.storage.db import session_scope
from common.storage.tables import PredictionLog
from tests.conftest import train_champion


def _log_inputs(session, version, frame):
    for record in frame.drop(columns="churned").to_dict(orient="records"):
        session.add(
            PredictionLog(
                prediction_id=uuid.uuid4().hex,
                model_version_id=version.id,
                model_version=version.version,
                features=record,
                prediction="0",
                latency_ms=1.0,
            )
        )


def test_drift_checks_store_reports_of_the_champion_s_recent_inputs(
    session_factory, db_settings
):
    settings = db_settings.with_overrides(demo_rows=3000, drift_window_rows=800)
    with session_scope(session_factory) as session:
        with pytest.raises(ModelNotReadyError):
            run_drift_check(session, settings)
        with pytest.raises(NotFoundError):
            latest_drift_report(session, "default")
        train_champion(session, settings)
        version = registry.get_champion(session, settings).model_version
        assert run_drift_check(session, settings).status == "insufficient_data"
        _log_inputs(session, version, synthetic.generate("baseline", 800, 21))
        calm = run_drift_check(session, settings)
        assert (calm.status, calm.window_size, calm.dataset_drift) == ("ok", 800, False)
        _log_inputs(session, version, synthetic.generate("mean_shift", 800, 22))
        moved = run_drift_check(session, settings)  # the newest 800 are the shifted
        assert moved.status == "drift"
        assert sorted(moved.report["drifted_features"]) == [
            "age",
            "monthly_spend",
            "usage_hours",
        ]
        latest = latest_drift_report(session, "default")
        assert latest["id"] == moved.id and latest["model_version"] == 1
        history = drift_history(session, "default", 10)
        assert [h["status"] for h in history] == ["insufficient_data", "ok", "drift"]
        assert history[-1]["psi"]["age"] > 0.1
        summary = compute_window_metrics(session, "default", minutes=15)["drift"]
        assert summary["status"] == "drift" and summary["drift_share"] == pytest.approx(
            3 / 8
        )
