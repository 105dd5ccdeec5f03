from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from common.clock import to_iso, utcnow
from common.data import synthetic
from common.errors import InvalidInputError, UnprocessableDataError
from common.jobs import tracker
from common.jobs.retraining import check_retrain_params, run_retrain
from common.models import registry
from common.monitoring.drift import check_drift
from common.rollouts import lifecycle
from common.storage.db import session_scope
from common.storage.tables import AuditEvent, FeedbackLabel, Job, PredictionLog
from tests.conftest import train_champion


@pytest.fixture
def with_champion(session_factory, db_settings):
    """Version 1: a random forest on the synthetic data, champion."""
    with session_scope(session_factory) as session:
        train_champion(session, db_settings, "random_forest", reason="start")
    return db_settings


def _run(session_factory, settings, **params):
    with session_scope(session_factory) as session:
        job_id = tracker.create_job(session, "retrain", params, "test").id
    seen = []
    result = tracker.run_job(
        session_factory, job_id, "task",
        lambda job, progress: run_retrain(
            session_factory, settings, job,
            lambda pct, stage: (seen.append(pct), progress(pct, stage))),
    )  # fmt: skip
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        session.expunge(job)
    return job, result, seen


def test_a_challenger_as_good_is_promoted_with_both_scores(
    session_factory, with_champion
):
    job, result, seen = _run(session_factory, with_champion)
    assert job.state == "succeeded", job.error
    assert result["outcome"] == "promoted" and result["model_version"] == 2
    assert result["challenger_f1"] >= result["champion_f1"] - result["tolerance"]
    assert seen == sorted(seen) and job.message.startswith("version 2 promoted")
    with session_scope(session_factory) as session:
        champion = registry.get_champion(session, with_champion)
        assert champion.model_version.version == 2 and champion.generation == 2
        assert champion.model_version.job_id == job.id
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "retrain")
        )
        assert audit.one().details["outcome"]["reason"] == "test"


def test_with_a_rollout_mode_a_challenger_that_passes_goes_into_a_rollout(
    session_factory, with_champion
):
    shadowed = with_champion.with_overrides(rollout_mode="shadow")
    job, result, _ = _run(session_factory, shadowed)
    assert result["outcome"] == "rollout", result
    assert result["rollout"]["mode"] == "shadow" and result["rollout"]["share"] == 1.0
    assert "went into a shadow rollout" in job.message
    with session_scope(session_factory) as session:
        assert registry.get_champion(session, shadowed).model_version.version == 1
        running = lifecycle.find_running(session, "default")
        assert running.challenger.version == 2
        assert running.started_by.startswith("retrain job")
    _, result, _ = _run(session_factory, shadowed)  # one rollout at a time
    assert result["outcome"] == "held"
    assert "is running" in result["rollout"]["not_started"]


def test_a_worse_challenger_is_rejected_and_the_champion_stays(
    session_factory, with_champion
):
    job, result, _ = _run(
        session_factory,
        with_champion,
        model_type="logistic_regression",
        params={"C": 1e-6},
    )
    assert job.state == "succeeded"
    assert result["outcome"] == "rejected"
    assert result["challenger_f1"] < result["champion_f1"] - result["tolerance"]
    with session_scope(session_factory) as session:
        assert registry.get_champion(session, with_champion).model_version.version == 1
        assert registry.get_version(session, with_champion, 2).state == "rejected"


def test_labelled_production_data_joins_the_training_set(
    session_factory, with_champion
):
    row = {
        "age": 40.0,
        "income": 50000.0,
        "tenure_months": 12.0,
        "monthly_spend": 70.5,
        "support_calls": 2.0,
        "usage_hours": 20.0,
        "plan": "basic",
        "region": "north",
    }
    with session_scope(session_factory) as session:
        for i in range(30):
            pid = uuid.uuid4().hex
            session.add(
                PredictionLog(
                    prediction_id=pid,
                    model_version=1,
                    features=row,
                    prediction="0",
                    latency_ms=1.0,
                    created_at=utcnow(),
                )
            )
            if i % 3:
                session.add(FeedbackLabel(prediction_id=pid, label=str(i % 2)))
    job, result, _ = _run(session_factory, with_champion)
    assert job.state == "succeeded"
    assert result["labelled_rows"] == 20
    base_rows = with_champion.demo_rows * (1 - with_champion.test_size)
    assert result["training_rows"] == int(
        base_rows + 20 * (1 - with_champion.test_size)
    )


def test_a_bad_training_set_fails_with_every_problem(session_factory, with_champion):
    data = Path(with_champion.data_dir)
    data.mkdir(parents=True)
    (data / "broken.csv").write_text(
        "age,income,plan,churned\n" + "".join(f"{i},oops,basic,1\n" for i in range(60))
    )
    job, _, _ = _run(session_factory, with_champion, dataset="broken.csv")
    assert job.state == "failed"
    codes = {p["code"] for p in job.error["details"]["problems"]}
    assert {"one_class", "non_numeric_values", "missing_feature"} <= codes
    with session_scope(session_factory) as session:
        assert registry.get_champion(session, with_champion).model_version.version == 1
        assert len(registry.list_versions(session, with_champion)) == 1


def test_bad_requests_are_refused_before_a_job_exists(session_factory, with_champion):
    with session_scope(session_factory) as session:
        with pytest.raises(InvalidInputError, match="unknown parameters"):
            check_retrain_params(session, with_champion, {"params": {"trees": 3}})
        with pytest.raises(InvalidInputError):
            check_retrain_params(session, with_champion, {"dataset": "../etc/passwd"})
        assert check_retrain_params(
            session, with_champion, {"dataset": "iris", "reason": "r"}
        ) == {"dataset": "iris"}


def _log_regime(session, version_id, rows, seed):
    """Answered predictions of `rows` regime_change inputs, with their true labels."""
    frame = synthetic.generate("regime_change", rows, seed)
    for record in frame.to_dict(orient="records"):
        pid = uuid.uuid4().hex
        label = record.pop("churned")
        session.add(
            PredictionLog(prediction_id=pid, model_version_id=version_id,
                          model_version=1, features=record, prediction="0",
                          latency_ms=1.0)
        )  # fmt: skip
        session.add(FeedbackLabel(prediction_id=pid, label=str(label)))


def test_a_retrain_since_a_time_learns_only_the_recent_world(
    session_factory, with_champion
):
    settings = with_champion.with_overrides(retrain_min_labels=300)
    with session_scope(session_factory) as session:
        champion = registry.get_champion(session, settings)
        _log_regime(session, champion.model_version_id, 100, 1)
        session.flush()
        since = to_iso(utcnow())
        with pytest.raises(UnprocessableDataError, match="0 labelled predictions"):
            check_retrain_params(session, settings, {"since": since})
        _log_regime(session, champion.model_version_id, 600, 2)
    job, result, _ = _run(session_factory, settings, since=since)
    assert job.state == "succeeded", job.error
    assert result["labelled_rows"] == 600 and result["outcome"] == "promoted"
    assert result["training_data"] == f"600 labelled predictions since {since}"
    assert result["challenger_f1"] > result["champion_f1"] + 0.2
    live = synthetic.generate("regime_change", 2000, 3)
    with session_scope(session_factory) as session:
        new = registry.get_champion(session, settings).model_version
        model = registry.load_model(settings, new)
        profile = new.reference_profile
    accuracy = (model.predict(live.drop(columns="churned")) == live["churned"]).mean()
    assert accuracy > 0.75
    # its reference profile describes the new world: the drifted inputs match it
    report = check_drift(profile, live.drop(columns="churned"), None, settings)
    assert report["dataset_drift"] is False, report["drifted_features"]


def test_since_must_be_a_past_time(session_factory, with_champion):
    with session_scope(session_factory) as session:
        for bad in ("yesterday", to_iso(utcnow() + timedelta(hours=1))):
            with pytest.raises(InvalidInputError, match="since must be"):
                check_retrain_params(session, with_champion, {"since": bad})


def test_a_registered_pipeline_that_cannot_be_refitted_fails_its_job_and_serves_on(
    session_factory, db_settings, churn_frame
):
    """A retrain of a user's pipeline clones and refits it; when that fails, the job
    fails with the reason and the champion keeps serving."""
    from dataclasses import replace

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from common.models.training import ModelTrainer
    from tests.models.user_code import RefusesToRefit

    settings = db_settings.for_model("custom")
    numbers = ["age", "tenure_months", "support_calls"]
    pipeline = make_pipeline(RefusesToRefit(fitted=True), LogisticRegression())
    pipeline.steps[0][1].fitted = True
    pipeline.fit(churn_frame[numbers], churn_frame["churned"])
    pipeline.steps[0][1].set_params(fitted=False)  # a clone cannot be fitted again
    trained = ModelTrainer(settings).train_model(
        churn_frame[[*numbers, "churned"]], "churned", "logistic_regression"
    )
    result = replace(trained, pipeline=pipeline, model_type="Pipeline/Refuses",
                     provenance={"format": "skops"}, dataset=None)  # fmt: skip
    with session_scope(session_factory) as session:
        version = registry.register_model(session, settings, result, reason="mine")
        registry.promote_version(session, settings, version.version, reason="mine")
        for row in churn_frame.head(150).to_dict("records"):
            pid = uuid.uuid4().hex
            session.add(PredictionLog(
                prediction_id=pid, model="custom", model_version_id=version.id,
                model_version=1, features={n: row[n] for n in numbers},
                prediction="0", latency_ms=1.0,
            ))  # fmt: skip
            session.add(FeedbackLabel(prediction_id=pid, label=str(row["churned"])))
        job_id = tracker.create_job(session, "retrain", {}, "test", model="custom").id
    tracker.run_job(
        session_factory, job_id, "task",
        lambda job, progress: run_retrain(session_factory, db_settings, job, progress),
    )  # fmt: skip
    with session_scope(session_factory) as session:
        job = session.get(Job, job_id)
        assert job.state == "failed"
        assert "cannot be refitted on this data" in job.error["message"]
        assert "fitted on data only its author has" in job.error["message"]
        assert registry.get_champion(session, settings).model_version.version == 1
        assert len(registry.list_versions(session, settings)) == 1
