from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.api import job_submission
from tests.integration.conftest import AUTH

pytestmark = pytest.mark.integration


@pytest.fixture
def queued(monkeypatch):
    """Stand in for Redis: record what would be published (API tests only)."""
    published = []

    def fake_enqueue(app, name, job_id):
        published.append((name, job_id))
        return f"task-{job_id}"

    monkeypatch.setattr(job_submission, "enqueue", fake_enqueue)
    return published


def test_retrain_answers_202_with_job_location_and_publishes_it(serving, queued):
    response = serving.post(
        "/model/retrain",
        json={"model_type": "random_forest", "reason": "weekly"},
        headers=AUTH,
    )
    assert response.status_code == 202
    body = response.json
    assert (
        response.headers["Location"] == body["status_url"] == f"/jobs/{body['job_id']}"
    )
    assert body["job"]["state"] == "queued" and body["job"]["reason"] == "weekly"
    assert body["job"]["params"] == {"model_type": "random_forest"}
    assert body["job"]["flower_url"].endswith(f"/task/task-{body['job_id']}")
    assert queued == [("training.retrain_model", body["job_id"])]
    job = serving.get(body["status_url"]).json
    assert job["task_id"] == f"task-{body['job_id']}"


def test_a_second_retrain_while_one_is_active_gets_409_with_its_id(serving, queued):
    first = serving.post("/model/retrain", headers=AUTH).json["job_id"]
    second = serving.post("/model/retrain", headers=AUTH)
    assert second.status_code == 409
    assert second.json["error"]["details"]["job_id"] == first


def test_ten_concurrent_retrains_create_exactly_one_job(serving, queued):
    with ThreadPoolExecutor(10) as pool:
        codes = sorted(
            pool.map(
                lambda _: serving.post("/model/retrain", headers=AUTH).status_code,
                range(10),
            )
        )
    assert codes == [202] + [409] * 9
    assert serving.get("/jobs?kind=retrain").json["total"] == 1
    assert len(queued) == 1


def test_retrain_with_redis_down_is_503_fast_and_leaves_no_queued_job(serving):
    started = time.monotonic()
    response = serving.post("/model/retrain", headers=AUTH)  # the broker port is closed
    assert time.monotonic() - started < 3
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json["error"]["message"] == "the job queue (Redis) is unreachable"
    (job,) = serving.get("/jobs").json["jobs"]
    assert job["state"] == "failed" and job["error"]["type"] == "DependencyError"
    assert serving.post("/model/retrain", headers=AUTH).status_code == 503  # not 409


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"params": {"n_trees": 10}}, 400),
        ({"model_type": "svm"}, 400),
        ({"dataset": "../secrets.csv"}, 400),
        ({"dataset": "nothing-here.csv"}, 404),
        ({"surprise": True}, 400),
        ({"since": "last tuesday"}, 400),
        ({"since": "2999-01-01T00:00:00Z"}, 400),
        ({"since": "2026-01-01T00:00:00Z"}, 422),  # no labelled predictions since
    ],
)
def test_bad_retrain_requests_are_refused_before_a_job_exists(
    serving, queued, body, status
):
    response = serving.post("/model/retrain", json=body, headers=AUTH)
    assert response.status_code == status
    assert serving.get("/jobs").json["total"] == 0 and queued == []


def test_retrain_needs_the_key(serving, queued):
    assert serving.post("/model/retrain").status_code == 401
    assert serving.post("/jobs/1/cancel").status_code == 401


def test_jobs_list_get_and_cancel(serving, queued):
    job_id = serving.post("/model/retrain", headers=AUTH).json["job_id"]
    cancelled = serving.post(f"/jobs/{job_id}/cancel", headers=AUTH)
    assert cancelled.status_code == 200 and cancelled.json["state"] == "cancelled"
    assert serving.post(f"/jobs/{job_id}/cancel", headers=AUTH).status_code == 409
    assert serving.post("/model/retrain", headers=AUTH).status_code == 202  # slot free
    listing = serving.get("/jobs?state=cancelled&page_size=1").json
    assert (listing["total"], listing["page_size"]) == (1, 1)
    assert listing["jobs"][0]["id"] == job_id
    assert serving.get("/jobs/999").status_code == 404
    assert serving.get("/jobs?state=lost").status_code == 400
    assert serving.get("/jobs?page=0").status_code == 400


def test_demo_reset_is_a_single_flight_job_behind_the_key(serving, monkeypatch):

    published = []
    monkeypatch.setattr(
        job_submission,
        "enqueue",
        lambda app, name, job_id: published.append(name) or "t-9",
    )
    assert serving.post("/demo/reset").status_code == 401
    first = serving.post("/demo/reset", headers=AUTH)
    assert first.status_code == 202 and first.json["job"]["kind"] == "demo_reset"
    assert serving.post("/demo/reset", headers=AUTH).status_code == 409
    assert published == ["demo.reset_demo"]
