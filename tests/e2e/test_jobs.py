"""Retraining through Redis and a real Celery worker."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import API_KEY, http, prepare_home

pytestmark = pytest.mark.e2e

AUTH = {"X-API-Key": API_KEY}
ROW = {
    "age": 40,
    "income": 50000.0,
    "tenure_months": 12,
    "monthly_spend": 70.5,
    "support_calls": 2,
    "usage_hours": 20.0,
    "plan": "basic",
    "region": "north",
}


def _wait_for(api_url: str, job_id: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    seen_progress = set()
    while time.monotonic() < deadline:
        _, _, job = http("GET", f"{api_url}/jobs/{job_id}")
        seen_progress.add(job["progress"])
        if job["state"] in ("succeeded", "failed", "cancelled"):
            job["seen_progress"] = sorted(seen_progress)
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']}")


def test_retrain_end_to_end_promotes_and_the_api_serves_it(
    tmp_path, start_api, start_worker
):
    settings = prepare_home(tmp_path / "home")
    api = start_api(settings, MODELOPS_MODEL_POLL_MS="200")
    start_worker(settings)
    status, headers, body = http(
        "POST",
        f"{api.url}/model/retrain",
        {"reason": "e2e"},
        AUTH,
    )
    assert status == 202, body
    job = _wait_for(api.url, body["job_id"])
    assert job["state"] == "succeeded", job
    assert (
        job["result"]["outcome"] == "promoted" and job["result"]["model_version"] == 2
    )
    assert job["attempts"] == 1 and job["task_id"]
    assert max(job["seen_progress"]) == 100
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _, headers, answer = http("POST", f"{api.url}/predict", {"features": ROW})
        if headers.get("X-Model-Version") == "2":
            break
        time.sleep(0.1)
    assert headers["X-Model-Version"] == "2" and answer["model_version"] == 2
    _, _, model = http("GET", f"{api.url}/model/status")
    assert model["version"] == 2 and model["job_id"] == body["job_id"]


def test_retrain_on_bad_data_fails_with_problems_and_keeps_the_champion(
    tmp_path, start_api, start_worker
):
    settings = prepare_home(tmp_path / "home")
    data = tmp_path / "home" / "data"
    data.mkdir()
    (data / "bad.csv").write_text("age,churned\n" + "1,1\n" * 80)
    api = start_api(settings)
    start_worker(settings)
    _, _, body = http("POST", f"{api.url}/model/retrain", {"dataset": "bad.csv"}, AUTH)
    job = _wait_for(api.url, body["job_id"])
    assert job["state"] == "failed"
    assert job["error"]["type"] == "UnprocessableDataError"
    codes = {p["code"] for p in job["error"]["details"]["problems"]}
    assert {"one_class", "missing_feature"} <= codes
    _, _, model = http("GET", f"{api.url}/model/status")
    assert model["version"] == 1
