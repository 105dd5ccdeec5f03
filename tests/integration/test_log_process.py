"""The prediction log's own process (services/api/log_process.py), as every API
process runs it by default: rows handed over by requests, written elsewhere, none
lost silently when either process dies."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from common.storage.db import make_engine
from common.storage.tables import PredictionLog
from tests.integration.conftest import promote_new_version

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def logging_app(serving_settings, churn_frame, make_app):
    promote_new_version(serving_settings, churn_frame)
    app = make_app(
        serving_settings.with_overrides(
            prediction_log_process=True, prediction_log_flush_ms=50
        )
    )
    app.extensions["model_cache"].refresh()
    return app


def _logged(settings) -> dict[str, PredictionLog]:
    engine = make_engine(settings)
    try:
        with engine.connect() as connection:
            return {r.prediction_id: r for r in connection.execute(
                select(PredictionLog))}  # fmt: skip
    finally:
        engine.dispose()


def _predict(client, row, times: int) -> list[str]:
    answers = [client.post("/predict", json={"features": {**row, "age": 20 + i}})
               for i in range(times)]  # fmt: skip
    assert all(a.status_code == 200 for a in answers)
    return [a.json["prediction_id"] for a in answers]


def _until(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_rows_are_written_by_a_process_of_their_own_with_every_field(logging_app, row):
    client = logging_app.test_client()
    ids = _predict(client, row, 20)
    batch = client.post("/predict", json={"instances": [row] * 5}).json
    ids += [p["prediction_id"] for p in batch["predictions"]]
    writer = logging_app.extensions["prediction_log"]
    assert writer.flush() is True
    assert writer.pid not in (None, os.getpid())
    # background work: under full load the requests' threads are scheduled first;
    # on SQLite it holds the one write lock, so it writes at our priority
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    settings = writer.settings
    nice = max(ours, settings.writer_niceness(settings.prediction_log_nice))
    assert os.getpriority(os.PRIO_PROCESS, writer.pid) == nice
    assert os.sched_getscheduler(writer.pid) == os.SCHED_BATCH  # never preempts
    logged = _logged(logging_app.extensions["settings"])
    assert set(logged) == set(ids)
    single = logged[ids[3]]
    assert single.features["age"] == 23 and single.model_version == 1
    assert single.prediction in ("0", "1") and 0.5 <= single.confidence <= 1
    assert set(single.probabilities) == {"0", "1"} and single.latency_ms > 0
    assert single.request_rows == 1 and single.status_code == 200
    assert [logged[i].request_rows for i in ids[20:]] == [5, 0, 0, 0, 0]


def test_a_log_process_that_dies_is_replaced_and_what_it_lost_is_counted(
    logging_app, row
):
    client = logging_app.test_client()
    writer = logging_app.extensions["prediction_log"]
    before = _predict(client, row, 10)
    assert writer.flush() is True
    first = writer.pid
    os.kill(first, signal.SIGSTOP)  # it receives rows but writes none
    lost = _predict(client, row, 30)
    _until(lambda: writer.pending == 0)  # all sent to the stopped process
    os.kill(first, signal.SIGKILL)
    _until(lambda: not _running(first))
    after = _predict(client, row, 10)
    # a new log process, after the restart delay (each wait bounded, so that a
    # slow first start is waited for again rather than eat the whole minute)
    _until(lambda: writer.flush(timeout=10), seconds=60)
    assert writer.pid not in (None, first)
    logged = set(_logged(logging_app.extensions["settings"]))
    assert logged == set(before) | set(after)
    assert writer.dropped == len(lost)  # every missing row is counted


def test_a_log_process_that_dies_while_no_rows_wait_is_replaced(logging_app, row):
    """Killed in a quiet moment, with nothing waiting to be sent: the next log
    process starts after the restart delay all the same, so a flush (as at
    shutdown) or the next request finds one ready."""
    client = logging_app.test_client()
    writer = logging_app.extensions["prediction_log"]
    _predict(client, row, 5)
    assert writer.flush() is True
    first = writer.pid
    os.kill(first, signal.SIGKILL)
    _until(lambda: not _running(first))
    _until(lambda: writer.pid not in (None, first), seconds=10)
    assert writer.flush(timeout=10) is True
    assert writer.dropped == 0
    after = _predict(client, row, 5)
    assert writer.flush() is True
    assert set(after) <= set(_logged(logging_app.extensions["settings"]))


def test_rows_sent_before_the_api_process_is_killed_are_still_written(
    serving_settings, tmp_path
):
    settings = serving_settings.with_overrides(
        prediction_log_process=True, prediction_log_flush_ms=50
    )
    (tmp_path / "settings.pickle").write_bytes(pickle.dumps(settings))
    with subprocess.Popen(
        [sys.executable, "-c", KILLED_API, str(tmp_path / "settings.pickle")],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as api:  # fmt: skip
        try:
            log_pid = int(api.stdout.readline())
            os.kill(log_pid, signal.SIGSTOP)  # nothing written before its parent dies
        finally:
            api.kill()  # as the kernel's OOM killer would
    os.kill(log_pid, signal.SIGCONT)
    _until(lambda: not _running(log_pid))  # it writes what it was sent, then ends
    assert len(_logged(settings)) == 200


KILLED_API = """
import pickle, sys, time
from common.clock import utcnow
from common.monitoring.prediction_log import new_prediction_id
from services.api.log_process import LogProcess

with open(sys.argv[1], "rb") as handle:
    settings = pickle.load(handle)
writer = LogProcess(settings)
writer.add([{"prediction_id": new_prediction_id(), "model": "churned",
             "model_version_id": None, "model_version": 1, "features": {"age": i},
             "prediction": "1", "confidence": 0.9, "probabilities": {"1": 0.9},
             "latency_ms": 1.0, "status_code": 200, "data_quality": None,
             "request_rows": 1, "created_at": utcnow()} for i in range(200)])
while writer.pending or writer.pid is None:
    time.sleep(0.01)
print(writer.pid, flush=True)
sys.stdin.read()  # killed while waiting here
"""


def _running(pid: int) -> bool:
    """Whether any thread of `pid` runs. A zombie (ended, not yet reaped) does not;
    but a killed process's first thread shows as a zombie while its other threads
    are still exiting, and its end of the pipe stays open until they have: rows
    sent then are lost with it (and counted)."""
    try:
        threads = list(Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return False
    for thread in threads:
        try:
            state = (thread / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z":
            return True
    return False
