"""Case 7: everything writing to one SQLite file at once for a minute: the API
under prediction and feedback load (two API processes), two Celery workers
running batch jobs and retrains, and beat with every periodic task every 2 s. No
"database is locked" anywhere, and the rows match the work done."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from common.storage.db import make_engine
from common.storage.tables import (
    DriftReport,
    FeedbackLabel,
    PredictionLog,
)
from tests.e2e.conftest import AUTH, http, prepare_home
from tests.faults.load import PredictLoad

pytestmark = pytest.mark.faults

# A minute; FAULTS_CONTENTION_SECONDS shortens it while developing.
SECONDS = float(os.environ.get("FAULTS_CONTENTION_SECONDS", "60"))
FEEDBACK_BATCH = 1000  # labels per POST /feedback at most (docs/api.md)
BUSY = {
    "MODELOPS_DRIFT_CHECK_SECONDS": "2",
    "MODELOPS_MONITOR_INTERVAL_SECONDS": "2",
    "MODELOPS_JOB_HEARTBEAT_SECONDS": "1",
    "MODELOPS_DRIFT_MIN_ROWS": "50",
}


def _count(connection, table) -> int:
    return connection.scalar(select(func.count()).select_from(table))


def _lines_around(text: str, logs: Iterable[Path], context: int = 3) -> list[str]:
    """Each log line naming `text`, with its file and the lines before it: what a
    failure shows (common/storage/db.py logs which lock wait it was and why)."""
    found = []
    for path in logs:
        lines = path.read_text(errors="replace").splitlines()
        for index, line in enumerate(lines):
            if text in line:
                before = lines[max(0, index - context) : index + 1]
                found.append(f"{path.name}:{index + 1}:\n" + "\n".join(before))
    return found


def test_api_workers_and_beat_share_sqlite_without_lock_errors(
    tmp_path, start_api, start_worker, record
):
    settings = prepare_home(tmp_path / "home")
    data = tmp_path / "home" / "data"
    data.mkdir(exist_ok=True)
    (data / "rows.csv").write_text(
        "age,income,tenure_months,monthly_spend,support_calls,usage_hours,plan,region\n"
        + "40,50000,12,70.5,2,20,basic,north\n" * 5000
    )
    api = start_api(settings, MODELOPS_API_WORKERS="2", **BUSY)
    start_worker(settings, "beat", beat=True, **BUSY)
    start_worker(settings, "w1", **BUSY)
    start_worker(settings, "w2", **BUSY)
    labels: list[int] = []
    jobs: list[int] = []
    refused: list[tuple[str, int, object]] = []  # the helpers' unexpected answers
    stop = threading.Event()

    def label_answers(load: PredictLoad) -> None:
        seen = 0
        while not stop.wait(0.2):
            fresh = [a for a in load.answers[seen:] if a.status == 200]
            seen += len(load.answers[seen:])
            items = [{"prediction_id": a.prediction_id, "label": 1} for a in fresh[::3]]
            for start in range(0, len(items), FEEDBACK_BATCH):  # the API's limit
                batch = items[start : start + FEEDBACK_BATCH]
                status, _, body = http("POST", f"{api.url}/feedback", batch)
                if status != 200:
                    refused.append(("POST /feedback", status, body))
                    continue
                labels.extend(1 for _ in batch)

    def submit_jobs() -> None:
        while not stop.wait(4):
            status, _, body = http(
                "POST", f"{api.url}/jobs/batch-score", {"dataset": "rows.csv"}, AUTH
            )
            if status == 202:
                jobs.append(body["job_id"])
            else:
                refused.append(("POST /jobs/batch-score", status, body))
            status, _, body = http("POST", f"{api.url}/model/retrain", None, AUTH)
            if status == 202:
                jobs.append(body["job_id"])
            elif status != 409:  # one retrain at a time
                refused.append(("POST /model/retrain", status, body))

    with PredictLoad(api.url, clients=4) as load:
        helpers = [threading.Thread(target=label_answers, args=(load,)),
                   threading.Thread(target=submit_jobs)]  # fmt: skip
        for helper in helpers:
            helper.start()
        time.sleep(SECONDS)
        stop.set()
        for helper in helpers:
            helper.join(60)
    deadline = time.monotonic() + 180
    states = [http("GET", f"{api.url}/jobs/{i}")[2]["state"] for i in jobs]
    while any(s in ("queued", "running") for s in states):
        assert time.monotonic() < deadline, states
        time.sleep(1)
        states = [http("GET", f"{api.url}/jobs/{i}")[2]["state"] for i in jobs]
    assert api.stop() == 0  # writes every buffered prediction log row

    locked = _lines_around("database is locked", tmp_path.glob("*.log"))
    answered = [a for a in load.answers if a.status == 200]
    engine = make_engine(settings)
    with engine.connect() as connection:
        predictions = _count(connection, PredictionLog)
        feedback = _count(connection, FeedbackLabel)
        drift_checks = _count(connection, DriftReport)
    engine.dispose()
    assert not locked, "\n".join(locked)
    assert refused == []
    assert load.failed == []
    assert predictions == len(answered)
    assert feedback == len(labels)
    assert states == ["succeeded"] * len(jobs)
    assert drift_checks > 0  # beat wrote too
    record(
        "contention",
        seconds=SECONDS,
        database_is_locked_errors=len(locked),
        failed_requests=len(load.failed),
        predictions_answered=len(answered),
        prediction_rows=predictions,
        feedback_sent=len(labels),
        feedback_rows=feedback,
        jobs_submitted=len(jobs),
        jobs_succeeded=states.count("succeeded"),
        drift_checks=drift_checks,
    )
