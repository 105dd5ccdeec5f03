from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import func, select

from common.demo import reset_demo
from common.jobs import tracker
from common.models import registry
from common.rollouts import lifecycle
from common.storage.db import session_scope
from common.storage.tables import (
    Alert,
    AuditEvent,
    FeedbackLabel,
    Job,
    ModelVersion,
    PredictionLog,
    RetrainingState,
    Rollout,
)
from tests.conftest import train_champion


def _other_models(session, settings) -> list[str]:
    """Two models of the user's beside the demo: versions, predictions, labels, an
    alert, a job and an artifact each."""
    ids = []
    for name in ("fraud", "price"):
        scoped = settings.for_model(name)
        for _ in range(2):
            version = train_champion(session, scoped)
        for _ in range(3):
            pid = uuid.uuid4().hex
            ids.append(pid)
            session.add(
                PredictionLog(
                    prediction_id=pid,
                    model=name,
                    model_version_id=version.id,
                    model_version=2,
                    features={},
                    prediction="1",
                    latency_ms=1.0,
                )
            )
            session.add(FeedbackLabel(prediction_id=pid, label="1"))
        session.add(
            Alert(model=name, rule="r", subject="s", severity="warn", message="theirs")
        )
        tracker.create_job(
            session, "batch_score", {"source": "y.csv"}, "theirs", model=name
        )
    return ids


def test_reset_clears_demo_data_and_serves_a_fresh_model(session_factory, db_settings):
    settings = db_settings.with_overrides(demo_rows=800)
    with session_scope(session_factory) as session:
        theirs = _other_models(session, settings)
    kept_files = set(Path(settings.artifact_dir).rglob("*.joblib"))
    kept_compiled = set(Path(settings.artifact_dir).rglob("*.onnx"))
    with session_scope(session_factory) as session:
        for _ in range(2):
            train_champion(session, settings)
        assert registry.get_champion(session, settings).generation == 2
        lifecycle.start_rollout(session, settings, version=1, mode="shadow")
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
        session.add(
            Alert(model="default", rule="r", subject="s", severity="warn", message="m")
        )
        session.add(
            RetrainingState(
                name="default", decision="waiting", reason="job 9", details={}
            )
        )
        tracker.create_job(
            session, "batch_score", {"source": "x.csv"}, "old", model="default"
        )
        reset_id = tracker.create_job(
            session, "demo_reset", {}, "reset", model="default"
        ).id
    old_files = list(set(Path(settings.artifact_dir).rglob("*.joblib")) - kept_files)
    assert len(old_files) == 2

    result = tracker.run_job(
        session_factory,
        reset_id,
        "t",
        lambda job, progress: reset_demo(session_factory, settings, job, progress),
    )
    assert result["model_version"] == 1 and result["generation"] == 3
    with session_scope(session_factory) as session:

        def count(table, model="default"):
            named = table in (ModelVersion, RetrainingState)
            column = table.name if named else table.model
            return session.scalar(
                select(func.count()).select_from(table).where(column == model)
            )

        assert (count(PredictionLog), count(Alert), count(Rollout)) == (0, 0, 0)
        assert count(RetrainingState) == 0  # no decision naming a job that is gone
        assert session.scalars(
            select(Job.kind).where(Job.model == "default")
        ).all() == ["demo_reset"]
        assert count(ModelVersion) == 1
        champion = registry.get_champion(session, settings)
        assert (champion.model_version.version, champion.generation) == (1, 3)
        assert "demo_reset" in session.scalars(select(AuditEvent.action)).all()
        # The user's models keep every version, prediction, label, alert and job.
        for name in ("fraud", "price"):
            assert (count(ModelVersion, name), count(PredictionLog, name)) == (2, 3)
            assert (count(Alert, name), count(Job, name)) == (1, 1)
            assert registry.get_champion(session, settings.for_model(name))
        labels = session.scalars(select(FeedbackLabel.prediction_id)).all()
        assert sorted(labels) == sorted(theirs)
    assert not any(path.exists() for path in old_files)
    assert all(path.exists() for path in kept_files)
    assert len(set(Path(settings.artifact_dir).rglob("*.joblib")) - kept_files) == 1
    # The old versions' compiled models went with them: the new one's is added.
    assert len(set(Path(settings.artifact_dir).rglob("*.onnx")) - kept_compiled) == 1
    assert all(path.exists() for path in kept_compiled)


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
