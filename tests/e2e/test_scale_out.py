"""Scale-out: several Celery worker processes on one Redis share the jobs, and each
job runs exactly once, on SQLite and on PostgreSQL when the suite is given one."""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter

import pytest

from common.config import Settings
from common.data import synthetic
from tests.databases import INTEGRATION_BACKENDS, empty_database
from tests.e2e.conftest import AUTH, http, prepare_home, result_request

pytestmark = pytest.mark.e2e

JOBS = 20
ROWS = 20_000


def _wait_until_ready(log_paths, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.is_file() and " ready." in p.read_text() for p in log_paths):
            return
        time.sleep(0.2)
    raise AssertionError("workers not ready: " + " | ".join(
        p.read_text()[-1000:] for p in log_paths if p.is_file()
    ))  # fmt: skip


def _wait_for_all(api_url: str, ids: list[int], timeout: float = 240) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = [http("GET", f"{api_url}/jobs/{ident}")[2] for ident in ids]
        if all(j["state"] in ("succeeded", "failed", "cancelled") for j in jobs):
            return jobs
        time.sleep(0.5)
    raise AssertionError(f"unfinished: {[(j['id'], j['state']) for j in jobs]}")


@pytest.mark.parametrize("backend", INTEGRATION_BACKENDS)
def test_two_workers_share_twenty_batch_jobs_each_run_exactly_once(
    backend, tmp_path, start_api, start_worker
):
    home = tmp_path / "home"
    with empty_database(Settings(home=str(home)), backend) as database:
        settings = prepare_home(home, database_url=database.database_url)
        frame = synthetic.generate("baseline", ROWS, 5).drop(columns="churned")
        (home / "data").mkdir(exist_ok=True)
        frame.to_csv(home / "data" / "rows.csv", index=False)
        api = start_api(settings)
        start_worker(settings, "alpha")
        start_worker(settings, "beta")
        _wait_until_ready([tmp_path / "alpha.log", tmp_path / "beta.log"])

        ids = []
        for index in range(JOBS):
            status, _, body = http(
                "POST", f"{api.url}/jobs/batch-score",
                {"dataset": "rows.csv", "reason": f"scale-out {index}"}, AUTH,
            )  # fmt: skip
            assert status == 202, body
            ids.append(body["job_id"])
        jobs = _wait_for_all(api.url, ids)

        assert [j["state"] for j in jobs] == ["succeeded"] * JOBS, jobs
        assert [j["attempts"] for j in jobs] == [1] * JOBS
        assert all(j["result"]["scored"] == ROWS for j in jobs)
        for ident in ids[:: JOBS // 4]:  # a few outputs, downloaded in full
            with urllib.request.urlopen(result_request(api.url, ident)) as answer:
                assert len(answer.read().decode().splitlines()) == ROWS + 1

        by_worker = Counter(j["worker"].split("@")[0] for j in jobs)
        assert set(by_worker) == {"alpha", "beta"}, by_worker  # both took work
        # Exactly once: each job's task was started once, on one worker, in all.
        starts = Counter(
            int(found)
            for name in ("alpha", "beta")
            for found in re.findall(
                r"batch score start job_id=(\d+)",
                (tmp_path / f"{name}.log").read_text(),
            )
        )
        assert starts == Counter({ident: 1 for ident in ids}), starts
        print(f"{backend}: jobs per worker {dict(by_worker)}")
