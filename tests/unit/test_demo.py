from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import func, select

from common.demo import reset_demo
from common.jobs import tracker
from common.models import registry
from common.storage.db import session_scope
from common.storage.tables import (
    Alert,
    AuditEvent,
    FeedbackLabel,
    Job,
    ModelVersion,
    PredictionLog,
    RetrainingState,
)
from tests.conftest import train_champion


def test_reset_clears_demo_data_and_serves_a_fresh_model(session_factory, db_settings):
    settings = db_settings.with_overrides(demo_rows=800)
    with session_scope(session_factory) as session:
        for _ in range(2):
            train_champion(session, settings)
        assert registry.get_champion(session, settings).generation == 2
        pid = uuid.uuid4().hex
        session.add(
            PredictionLog(
                prediction_id=pid,
                model_version=2,
                features={},
                prediction="1",
                latency_ms=1.0,
            )
        )
        session.add(FeedbackLabel(prediction_id=pid, label="1"))
        session.add(Alert(model="default", rule="r", subject="s", severity="warn",
                          message="m"))  # fmt: skip
        session.add(RetrainingState(name="default", decision="waiting", reason="job 9",
                                    details={}))  # fmt: skip
        tracker.create_job(session, "batch_score", {"source": "x.csv"}, "old",
                           model="default")  # fmt: skip
        reset_id = tracker.create_job(session, "demo_reset", {}, "reset",
                                      model="default").id  # fmt: skip
    old_files = list(Path(settings.artifact_dir).rglob("*.joblib"))
    assert len(old_files) == 2

    result = tracker.run_job(
        session_factory,
        reset_id,
        "t",
        lambda job, progress: reset_demo(session_factory, settings, job, progress),
    )
    assert result["model_version"] == 1 and result["generation"] == 3
    with session_scope(session_factory) as session:

        def count(table):
            return session.scalar(select(func.count()).select_from(table))

        assert (count(PredictionLog), count(FeedbackLabel), count(Alert)) == (0, 0, 0)
        assert count(RetrainingState) == 0  # no decision naming a job that is gone
        assert session.scalars(select(Job.kind)).all() == ["demo_reset"]
        assert count(ModelVersion) == 1
        champion = registry.get_champion(session, settings)
        assert (champion.model_version.version, champion.generation) == (1, 3)
        assert "demo_reset" in session.scalars(select(AuditEvent.action)).all()
    assert not any(path.exists() for path in old_files)
    assert len(list(Path(settings.artifact_dir).rglob("*.joblib"))) == 1


def test_demo_scenario_is_set_and_a_reset_returns_to_baseline(session_factory):
    import pytest

    from common.demo import current_demo_scenario, set_demo_scenario
    from common.errors import InvalidInputError
    from common.storage import repositories

    with session_scope(session_factory) as session:
        assert current_demo_scenario(session) == "baseline"
        set_demo_scenario(session, "mean_shift", "me")
        session.flush()
        assert current_demo_scenario(session) == "mean_shift"
        repositories.add_audit_event(session, "demo_reset", "job", 1)
        session.flush()
        assert current_demo_scenario(session) == "baseline"
        with pytest.raises(InvalidInputError, match="unknown scenario"):
            set_demo_scenario(session, "tsunami", "me")
