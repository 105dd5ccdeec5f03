from __future__ import annotations

import pytest

from common.monitoring import alerts
from common.monitoring.alert_rules import AlertRule
from common.storage.db import make_engine, make_session_factory, session_scope
from tests.integration.conftest import AUTH

pytestmark = pytest.mark.integration

LATENCY = AlertRule("p99-latency", "latency_p99_ms", ">", 0.0, "warn", min_samples=3)


def test_alerts_list_ack_and_states(serving_app, serving_settings, row):
    client = serving_app.test_client()
    assert client.get("/alerts").json == {"alerts": []}
    for _ in range(3):
        client.post("/predict", json={"features": row})
    serving_app.extensions["prediction_log"].flush()
    engine = make_engine(serving_settings)
    with session_scope(make_session_factory(engine)) as session:
        (alert_id,) = alerts.evaluate_alerts(session, "default", [LATENCY])["opened"]
    engine.dispose()
    listed = client.get("/alerts?state=open").json["alerts"]
    assert [a["id"] for a in listed] == [alert_id]
    assert listed[0]["deliveries"][0]["channel"] == "dashboard"
    assert listed[0]["message"].startswith("latency_p99_ms of default was")
    assert client.post(f"/alerts/{alert_id}/ack").status_code == 401
    acked = client.post(f"/alerts/{alert_id}/ack", headers=AUTH)
    assert acked.status_code == 200 and acked.json["state"] == "acknowledged"
    assert client.get("/alerts?state=open").json["alerts"] == []
    assert client.post("/alerts/999/ack", headers=AUTH).status_code == 404
    assert client.get("/alerts?state=sleeping").status_code == 400
