"""Retraining through Redis and a real Celery worker."""

from __future__ import annotations

import csv
import subprocess
import time
import urllib.request

import pytest

from tests.e2e.conftest import AUTH, ROW, http, prepare_home, result_request

pytestmark = pytest.mark.e2e


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


def _scoring_file(home, rows: int) -> None:
    from common.data import synthetic

    frame = synthetic.generate("baseline", rows, 11).rename(
        columns={"churned": "truth"}
    )
    frame.insert(0, "row_id", range(rows))
    data = home / "data"
    data.mkdir(exist_ok=True)
    frame.to_csv(data / "big.csv", index=False)


def test_batch_scoring_100k_rows_through_a_worker(tmp_path, start_api, start_worker):
    settings = prepare_home(tmp_path / "home")
    _scoring_file(tmp_path / "home", 100_000)
    api = start_api(settings)
    start_worker(settings)
    status, _, body = http(
        "POST", f"{api.url}/jobs/batch-score", {"dataset": "big.csv"}, AUTH
    )
    assert status == 202, body
    job = _wait_for(api.url, body["job_id"])
    assert job["state"] == "succeeded", job
    assert job["result"]["rows"] == job["result"]["scored"] == 100_000
    assert len([p for p in job["seen_progress"] if 0 < p < 100]) >= 1
    with urllib.request.urlopen(result_request(api.url, body["job_id"])) as response:
        lines = response.read().decode().splitlines()
    assert len(lines) == 100_001
    assert lines[0] == (
        "row_id,truth,prediction,confidence,probability_0,"
        "probability_1,error,model_version"
    )
    rows = list(csv.reader(lines))
    assert rows[1][0] == "0" and rows[-1][0] == "99999"
    assert {row[6] for row in rows[1:]} == {""}  # no errors


def test_cancel_a_queued_and_a_running_job(tmp_path, start_api, start_worker):
    settings = prepare_home(tmp_path / "home")
    _scoring_file(tmp_path / "home", 300_000)
    api = start_api(settings)
    queued = http("POST", f"{api.url}/jobs/batch-score", {"dataset": "big.csv"}, AUTH)[
        2
    ]
    status, _, cancelled = http(
        "POST", f"{api.url}/jobs/{queued['job_id']}/cancel", None, AUTH
    )
    assert status == 200 and cancelled["state"] == "cancelled"
    start_worker(settings, MODELOPS_SCORE_CHUNK_ROWS="2000")
    running = http("POST", f"{api.url}/jobs/batch-score", {"dataset": "big.csv"}, AUTH)[
        2
    ]
    deadline = time.monotonic() + 60
    while http("GET", f"{api.url}/jobs/{running['job_id']}")[2]["progress"] < 5:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    http("POST", f"{api.url}/jobs/{running['job_id']}/cancel", None, AUTH)
    job = _wait_for(api.url, running["job_id"])
    assert job["state"] == "cancelled" and 5 <= job["progress"] < 100
    assert (
        http("GET", f"{api.url}/jobs/{running['job_id']}/result", headers=AUTH)[0]
        == 409
    )
    first = http("GET", f"{api.url}/jobs/{queued['job_id']}")[2]
    assert first["state"] == "cancelled" and first["attempts"] == 0  # never ran


def test_redis_down_then_back_without_restarting_the_api(
    tmp_path, start_api, start_worker
):
    from services.launcher import free_port, redis_command

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    def start_redis():
        return subprocess.Popen(
            redis_command(port, tmp_path, append_only=False), stdout=subprocess.DEVNULL
        )

    redis = start_redis()
    try:
        settings = prepare_home(tmp_path / "home")
        api = start_api(settings, MODELOPS_REDIS_URL=url)
        start_worker(settings, MODELOPS_REDIS_URL=url)
        redis.terminate()
        redis.wait(10)
        started = time.monotonic()
        status, headers, body = http("POST", f"{api.url}/model/retrain", None, AUTH)
        assert time.monotonic() - started < 3
        assert status == 503 and headers["Retry-After"], body
        for _ in range(20):
            assert http("POST", f"{api.url}/predict", {"features": ROW})[0] == 200
        assert http("GET", f"{api.url}/readyz")[0] == 503
        redis = start_redis()
        deadline = time.monotonic() + 30
        while http("GET", f"{api.url}/readyz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        status, _, body = http("POST", f"{api.url}/model/retrain", None, AUTH)
        assert status == 202, body
        job = _wait_for(api.url, body["job_id"], timeout=120)
        assert job["state"] == "succeeded", job
    finally:
        redis.terminate()
        redis.wait(10)


def test_demo_reset_through_a_worker_is_served_without_restarts(
    tmp_path, start_api, start_worker
):
    settings = prepare_home(tmp_path / "home")
    api = start_api(settings, MODELOPS_MODEL_POLL_MS="200")
    start_worker(settings)
    for _ in range(5):
        http("POST", f"{api.url}/predict", {"features": ROW})
    _, _, body = http("POST", f"{api.url}/demo/reset", None, AUTH)
    job = _wait_for(api.url, body["job_id"])
    assert job["state"] == "succeeded", job
    _, _, model = http("GET", f"{api.url}/model/status")
    assert (model["version"], model["generation"]) == (1, 2)
    assert model["reason"] == "demo reset"
    deadline = time.monotonic() + 5
    while (
        http("POST", f"{api.url}/predict", {"features": ROW})[2]["model_version"] != 1
        or http("GET", f"{api.url}/model/status")[2]["loaded_at"] is None
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert http("GET", f"{api.url}/jobs")[2]["total"] == 1
