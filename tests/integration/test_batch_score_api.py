from __future__ import annotations

import io
from pathlib import Path

import pytest

from common.data import synthetic
from common.jobs import tracker
from common.storage.db import make_engine, make_session_factory, session_scope
from services.api import job_submission
from tests.integration.conftest import AUTH

pytestmark = pytest.mark.integration


@pytest.fixture
def queued(monkeypatch):
    published = []
    monkeypatch.setattr(
        job_submission,
        "enqueue",
        lambda app, name, job_id: published.append(job_id) or "t-1",
    )
    return published


def _csv_bytes(rows=20):
    frame = synthetic.generate("baseline", rows, 2).drop(columns="churned")
    return frame.to_csv(index=False).encode()


def test_upload_is_stored_and_queued(serving, serving_settings, queued):
    response = serving.post(
        "/jobs/batch-score",
        headers=AUTH,
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(_csv_bytes()), "customers.csv"), "reason": "monthly"},
    )
    assert response.status_code == 202, response.json
    job = response.json["job"]
    assert job["kind"] == "batch_score" and job["reason"] == "monthly"
    assert job["params"]["filename"] == "customers.csv"
    stored = Path(serving_settings.data_dir) / job["params"]["source"]
    assert stored.read_bytes() == _csv_bytes()
    assert queued == [job["id"]]


def test_named_dataset_inside_the_data_directory_only(
    serving, serving_settings, queued
):
    data = Path(serving_settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    (data / "march.csv").write_bytes(_csv_bytes())
    ok = serving.post("/jobs/batch-score", json={"dataset": "march.csv"}, headers=AUTH)
    assert ok.status_code == 202
    for name, status in (
        ("../march.csv", 400),
        ("/etc/passwd", 400),
        ("a/b.csv", 400),
        ("absent.csv", 404),
    ):
        response = serving.post(
            "/jobs/batch-score", json={"dataset": name}, headers=AUTH
        )
        assert response.status_code == status, name
    assert len(queued) == 1


def test_upload_over_the_limit_gets_413(
    serving_settings, churn_frame, queued, make_app
):
    from tests.integration.conftest import promote_new_version

    promote_new_version(serving_settings, churn_frame)
    client = make_app(
        serving_settings.with_overrides(upload_max_bytes=1000)
    ).test_client()
    response = client.post(
        "/jobs/batch-score",
        headers=AUTH,
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(_csv_bytes(200)), "big.csv")},
    )
    assert response.status_code == 413
    assert response.json["error"]["code"] == "request_entity_too_large"
    assert queued == []


def test_upload_must_be_a_csv_in_the_file_field(serving, queued):
    wrong_field = serving.post(
        "/jobs/batch-score",
        headers=AUTH,
        content_type="multipart/form-data",
        data={"data": (io.BytesIO(b"a\n1\n"), "x.csv")},
    )
    assert (
        wrong_field.status_code == 400
        and "'file'" in wrong_field.json["error"]["message"]
    )
    wrong_type = serving.post(
        "/jobs/batch-score",
        headers=AUTH,
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(b"a\n1\n"), "x.xlsx")},
    )
    assert wrong_type.status_code == 400


def test_a_form_field_the_call_does_not_read_is_refused_and_nothing_is_queued(
    serving, serving_settings, queued
):
    """A `model` form field would have had the file scored by the default model:
    it is refused, with where the model is chosen, and nothing is stored or queued."""
    answer = serving.post(
        "/jobs/batch-score",
        headers=AUTH,
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(_csv_bytes()), "rows.csv"), "model": "price"},
    )
    assert answer.status_code == 400
    error = answer.json["error"]
    assert error["details"]["field"] == "model"
    assert "?model=<name>" in error["message"] and "'file'" in error["message"]
    assert not queued
    uploads = Path(serving_settings.data_dir) / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


def test_result_is_404_before_409_after_failure_and_a_csv_once_done(
    serving, serving_settings
):
    from common.jobs import scoring

    engine = make_engine(serving_settings)
    factory = make_session_factory(engine)
    data = Path(serving_settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    (data / "few.csv").write_bytes(_csv_bytes())
    with session_scope(factory) as session:
        done = tracker.create_job(session, "batch_score", {"source": "few.csv"}, "t").id
        failed = tracker.create_job(session, "batch_score", {"source": "x"}, "t").id
        tracker.finish_job(
            session, failed, tracker.JobState.FAILED, error={"type": "x"}
        )
    assert serving.get(f"/jobs/{done}/result", headers=AUTH).status_code == 404
    assert serving.get(f"/jobs/{failed}/result", headers=AUTH).status_code == 409
    tracker.run_job(
        factory,
        done,
        "t",
        lambda job, progress: scoring.run_batch_score(
            factory, serving_settings, job, progress
        ),
    )
    with serving.get(f"/jobs/{done}/result", headers=AUTH) as result:
        assert result.status_code == 200 and result.mimetype == "text/csv"
        assert result.data.decode().splitlines()[0].endswith("error,model_version")
        assert len(result.data.decode().splitlines()) == 21
    engine.dispose()
