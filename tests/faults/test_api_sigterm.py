"""Case 3: the API stopped with SIGTERM under load. The server stops accepting, lets
in-flight requests finish, and each API process writes its buffered prediction log
before it exits: every answered prediction has its row."""

from __future__ import annotations

import signal
import time

import pytest
from sqlalchemy import select

from common.storage.db import make_engine
from common.storage.tables import PredictionLog
from tests.e2e.conftest import prepare_home
from tests.faults.load import PredictLoad

pytestmark = pytest.mark.faults


def test_sigterm_under_load_answers_in_flight_requests_and_logs_each(
    tmp_path, start_api, record
):
    settings = prepare_home(tmp_path / "home")
    api = start_api(
        settings,
        MODELOPS_PREDICTION_LOG_FLUSH_MS="600000",
        MODELOPS_PREDICTION_LOG_BATCH_SIZE="100000",
        MODELOPS_API_WORKERS="2",  # each process writes its own buffer
    )  # rows stay buffered until shutdown: the hardest case for the log
    with PredictLoad(api.url, clients=8) as load:
        time.sleep(3)
        sent_at = time.monotonic()
        api.process.send_signal(signal.SIGTERM)
        assert api.process.wait(60) == 0
        time.sleep(0.5)
    before = [a for a in load.answers if a.started < sent_at]
    answered = [a for a in load.answers if a.status == 200]
    # Before the signal every request was answered; after it, new connections are
    # refused (status 0, the client's to retry) but none is answered with an error.
    assert before and all(a.status == 200 for a in before if a.ended < sent_at)
    assert {a.status for a in load.answers} <= {200, 0}
    in_flight = [a for a in answered if a.started < sent_at < a.ended]

    engine = make_engine(settings)
    with engine.connect() as connection:
        logged = set(connection.scalars(select(PredictionLog.prediction_id)))
    engine.dispose()
    missing = [a for a in answered if a.prediction_id not in logged]
    assert missing == []
    record(
        "api-sigterm",
        answered_requests=len(answered),
        in_flight_at_signal=len(in_flight),
        failed_requests=sum(a.status not in (200, 0) for a in load.answers),
        refused_after_signal=sum(a.status == 0 for a in load.answers),
        rows_lost=len(missing),
    )
