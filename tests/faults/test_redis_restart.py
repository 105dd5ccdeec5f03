"""Case 2: Redis killed and restarted under prediction traffic. `/predict` never needs
Redis, so no request fails. With AOF (as docker-compose.yml runs it) the jobs queued
before the restart are still there and each runs once; without it their messages are
gone, and beat publishes them again once they have waited
MODELOPS_JOB_REPUBLISH_SECONDS: each still runs once."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from services.launcher import free_port, redis_command
from tests.e2e.conftest import AUTH, http, prepare_home
from tests.faults.load import PredictLoad

pytestmark = pytest.mark.faults

JOBS = 5


@pytest.mark.parametrize("append_only", [True, False], ids=["aof", "no-aof"])
def test_predictions_never_fail_and_queued_jobs_survive_a_redis_restart(
    append_only, tmp_path, start_api, start_worker, record
):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    data = tmp_path / "redis"
    data.mkdir()

    def start_redis() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            redis_command(port, data, append_only=append_only),
            stdout=subprocess.DEVNULL,
        )
        time.sleep(0.5)
        return process

    redis = start_redis()
    try:
        settings = prepare_home(tmp_path / "home")
        (tmp_path / "home" / "data").mkdir(exist_ok=True)
        (tmp_path / "home" / "data" / "few.csv").write_text(
            "age,income,tenure_months,monthly_spend,support_calls,usage_hours,plan,region\n"
            + "40,50000,12,70.5,2,20,basic,north\n" * 50
        )
        api = start_api(settings, MODELOPS_REDIS_URL=url)
        with PredictLoad(api.url, clients=4) as load:
            # No worker yet: the jobs wait in Redis through the restart.
            ids = [
                http("POST", f"{api.url}/jobs/batch-score", {"dataset": "few.csv"},
                     AUTH)[2]["job_id"]
                for _ in range(JOBS)
            ]  # fmt: skip
            time.sleep(1.5)  # AOF everysec: past the next fsync
            redis.send_signal(signal.SIGKILL)  # a crash, not a clean shutdown
            redis.wait(10)
            down_at = time.monotonic()
            time.sleep(3)
            assert http("GET", f"{api.url}/readyz")[0] == 503
            redis = start_redis()
            deadline = time.monotonic() + 30
            while http("GET", f"{api.url}/readyz")[0] != 200:
                assert time.monotonic() < deadline, "the API never saw Redis again"
                time.sleep(0.2)
            back_at = time.monotonic()
            time.sleep(1)
        during = [a for a in load.answers if down_at <= a.started <= back_at]
        assert len(during) > 20 and load.failed == []

        beat = {
            "MODELOPS_REDIS_URL": url,
            "MODELOPS_JOB_HEARTBEAT_SECONDS": "2",
            "MODELOPS_JOB_STALL_SECONDS": "15",  # beat's job check every 5 s
            "MODELOPS_JOB_REPUBLISH_SECONDS": "600" if append_only else "3",
        }
        start_worker(settings, "beat", beat=True, **beat)
        start_worker(settings, "w1", **beat)
        deadline = time.monotonic() + 90
        while True:
            jobs = [http("GET", f"{api.url}/jobs/{i}")[2] for i in ids]
            if (
                all(j["state"] == "succeeded" for j in jobs)
                or time.monotonic() > deadline
            ):
                break
            time.sleep(0.3)
        assert [j["state"] for j in jobs] == ["succeeded"] * JOBS, jobs
        assert [j["attempts"] for j in jobs] == [1] * JOBS
        republished = sum(
            (tmp_path / "w1.log")
            .read_text()
            .count(f"job {i} published again: still queued")
            for i in ids
        )
        record(
            f"redis-restart-{'aof' if append_only else 'no-aof'}",
            republished_after_the_restart=republished,
            predict_requests=len(load.answers),
            predict_requests_while_down=len(during),
            failed_requests=len(load.failed),
            jobs_queued_before=JOBS,
            jobs_run_after=sum(j["state"] == "succeeded" for j in jobs),
            jobs_lost=JOBS - sum(j["state"] == "succeeded" for j in jobs),
            duplicate_runs=sum(j["attempts"] - 1 for j in jobs),
        )
    finally:
        redis.terminate()
        redis.wait(10)
