"""Case 1: a worker killed with SIGKILL in the middle of a retrain and of a batch
score. Beat notices the stopped heartbeat and queues the job again; a new worker
claims it and completes it once."""

from __future__ import annotations

import csv
import os
import signal
import time
import urllib.request

import pytest

from common.data import synthetic
from tests.e2e.conftest import AUTH, http, prepare_home, result_request

pytestmark = pytest.mark.faults

FAST_BEATS = {"MODELOPS_JOB_HEARTBEAT_SECONDS": "1", "MODELOPS_JOB_STALL_SECONDS": "6"}


def _wait_for(api_url: str, job_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http("GET", f"{api_url}/jobs/{job_id}")[2]
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {job['state']}")


def _kill_when_running(api_url: str, job_id: int, worker, at_progress: int) -> None:
    deadline = time.monotonic() + 90
    while http("GET", f"{api_url}/jobs/{job_id}")[2]["progress"] < at_progress:
        assert time.monotonic() < deadline, "the job never got going"
        time.sleep(0.05)
    os.killpg(worker.pid, signal.SIGKILL)  # the whole worker, mid-job
    worker.wait()


def test_a_killed_worker_s_retrain_completes_once_on_a_new_worker(
    tmp_path, start_api, start_worker, record
):
    settings = prepare_home(tmp_path / "home", ("random_forest",))
    api = start_api(settings)
    slow = {"MODELOPS_DEMO_ROWS": "40000", **FAST_BEATS}
    start_worker(settings, "beat", beat=True, **FAST_BEATS)
    doomed = start_worker(settings, "w1", **slow)
    _, _, body = http("POST", f"{api.url}/model/retrain", {"reason": "kill test"}, AUTH)
    _kill_when_running(api.url, body["job_id"], doomed, at_progress=20)
    killed_at = time.monotonic()
    start_worker(settings, "w2", **slow)
    job = _wait_for(api.url, body["job_id"], timeout=240)
    recovered = time.monotonic() - killed_at
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2 and job["worker"].startswith("w2@")
    _, _, models = http("GET", f"{api.url}/models/default/versions")
    assert [m["version"] for m in models["models"]] == [2, 1]  # exactly one new version
    assert models["models"][0]["job_id"] == body["job_id"]
    record(
        "worker-killed-retrain",
        jobs_lost=0,
        new_versions=len(models["models"]) - 1,
        attempts=job["attempts"],
        seconds_kill_to_done=round(recovered, 1),
    )


def test_a_killed_worker_s_batch_score_completes_once_with_every_row(
    tmp_path, start_api, start_worker, record
):
    rows = 300_000
    settings = prepare_home(tmp_path / "home")
    frame = synthetic.generate("baseline", rows, 3).drop(columns="churned")
    frame.insert(0, "row_id", range(rows))
    (tmp_path / "home" / "data").mkdir(exist_ok=True)
    frame.to_csv(tmp_path / "home" / "data" / "big.csv", index=False)
    api = start_api(settings)
    small_chunks = {"MODELOPS_SCORE_CHUNK_ROWS": "10000", **FAST_BEATS}
    start_worker(settings, "beat", beat=True, **FAST_BEATS)
    doomed = start_worker(settings, "w1", **small_chunks)
    _, _, body = http(
        "POST", f"{api.url}/jobs/batch-score", {"dataset": "big.csv"}, AUTH
    )
    _kill_when_running(api.url, body["job_id"], doomed, at_progress=15)
    killed_at = time.monotonic()
    start_worker(settings, "w2", **small_chunks)
    job = _wait_for(api.url, body["job_id"], timeout=240)
    recovered = time.monotonic() - killed_at
    assert job["state"] == "succeeded", job
    assert job["attempts"] == 2 and job["result"]["scored"] == rows
    with urllib.request.urlopen(result_request(api.url, body["job_id"])) as answer:
        lines = answer.read().decode().splitlines()
    ids = [int(r[0]) for r in csv.reader(lines[1:])]
    assert len(ids) == rows and sorted(ids) == list(range(rows))  # each row once
    outputs = list((tmp_path / "home" / "data" / "outputs").iterdir())
    assert len(outputs) == 1, outputs  # no partial file left behind
    record(
        "worker-killed-batch",
        jobs_lost=0,
        input_rows=rows,
        output_rows=len(ids),
        duplicate_rows=len(ids) - len(set(ids)),
        attempts=job["attempts"],
        seconds_kill_to_done=round(recovered, 1),
    )
