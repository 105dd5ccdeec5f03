from __future__ import annotations

import pytest
from sqlalchemy import func, select

from common.storage import repositories
from common.storage.tables import FeedbackLabel, PredictionLog
from services.api.app import create_app, stop_background
from tests.integration.conftest import promote_new_version

pytestmark = pytest.mark.integration


@pytest.fixture
def slow_flush_app(serving_settings, churn_frame):
    """Rows are written only when 20 are waiting, or on close; by a thread of this
    process, so that a test can see and break the writer's database calls."""
    promote_new_version(serving_settings, churn_frame)
    app = create_app(
        serving_settings.with_overrides(
            prediction_log_batch_size=20,
            prediction_log_flush_ms=60_000,
            prediction_log_process=False,
        )
    )
    app.extensions["model_cache"].refresh()
    yield app
    stop_background(app)


def _count(engine, query):
    with engine.connect() as connection:
        return connection.execute(query).scalar()


def test_every_prediction_is_logged_in_batches_not_per_request(
    slow_flush_app, row, monkeypatch
):
    engine = slow_flush_app.extensions["engine"]
    writes = []  # driver-level inserts (executemany or COPY) of log rows
    insert = repositories.insert_prepared_rows
    monkeypatch.setattr(repositories, "insert_prepared_rows",
                        lambda session, rows: (writes.append(rows.count),
                                               insert(session, rows)))  # fmt: skip
    client = slow_flush_app.test_client()
    ids = [
        client.post("/predict", json={"features": {**row, "age": 20 + i}}).json[
            "prediction_id"
        ]
        for i in range(45)
    ]
    batch = client.post("/predict", json={"instances": [row] * 5}).json
    ids += [p["prediction_id"] for p in batch["predictions"]]
    stop_background(slow_flush_app)  # graceful shutdown flushes the rest
    assert _count(engine, select(func.count()).select_from(PredictionLog)) == 50
    assert sum(writes) == 50 and len(writes) <= 3  # batches, not one per request
    with engine.connect() as connection:
        logged = connection.execute(
            select(PredictionLog).where(PredictionLog.prediction_id == ids[3])
        ).one()
    assert logged.features == {**row, "age": 23}  # as sent: text, ints and floats
    assert logged.model_version == 1
    assert logged.prediction in ("0", "1") and 0.5 <= logged.confidence <= 1
    assert logged.latency_ms > 0 and logged.created_at is not None
    assert set(logged.probabilities) == {"0", "1"}


def test_feedback_before_the_log_row_is_kept_and_joined_later(slow_flush_app, row):
    client = slow_flush_app.test_client()
    prediction_id = client.post("/predict", json={"features": row}).json[
        "prediction_id"
    ]
    early = client.post("/feedback", json={"prediction_id": prediction_id, "label": 1})
    assert early.status_code == 200
    assert early.json["results"][0] == {
        "prediction_id": prediction_id,
        "label": 1,
        "status": "recorded",
        "joined": False,
    }
    slow_flush_app.extensions["prediction_log"].flush()
    engine = slow_flush_app.extensions["engine"]
    joined = select(FeedbackLabel.label, PredictionLog.prediction).join(
        PredictionLog, PredictionLog.prediction_id == FeedbackLabel.prediction_id
    )
    with engine.connect() as connection:
        assert len(connection.execute(joined).all()) == 1
    again = client.post("/feedback", json={"prediction_id": prediction_id, "label": 1})
    assert again.json["results"][0]["status"] == "unchanged"
    assert again.json["results"][0]["joined"] is True


def test_database_outage_keeps_rows_until_it_is_back(slow_flush_app, row, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from common.storage import repositories

    writer = slow_flush_app.extensions["prediction_log"]
    client = slow_flush_app.test_client()
    for _ in range(3):
        client.post("/predict", json={"features": row})

    def refuse(*_args):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(repositories, "insert_prepared_prediction_logs", refuse)
    assert writer.flush() is False
    assert writer.pending == 3 and writer.write_failures == 1
    monkeypatch.undo()
    assert writer.flush() is True
    assert writer.pending == 0 and writer.written == 3 and writer.dropped == 0
