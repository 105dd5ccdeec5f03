"""Case 5: a damaged model artifact (truncated, or replaced by another model's
pickle). It is never loaded: promotion refuses it, an API process that goes to load it
refuses it too, the previous model keeps serving, and an alert opens."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from common.storage.db import make_engine
from common.storage.tables import Champion, ModelVersion
from services.launcher import free_port
from tests.e2e.conftest import AUTH, http, prepare_home
from tests.faults.load import PredictLoad
from tests.faults.webhook import receiving, webhook_env

pytestmark = pytest.mark.faults


def _artifact(settings, version: int):
    from pathlib import Path

    [path] = (Path(settings.artifact_dir) / "default" / str(version)).glob("*.joblib")
    return path


def _alerts(api_url: str) -> list[dict]:
    return [a for a in http("GET", f"{api_url}/alerts")[2]["alerts"]
            if a["rule"] == "artifact_refused"]  # fmt: skip


def test_a_damaged_artifact_is_never_loaded_and_opens_an_alert(
    tmp_path, start_api, start_worker, record
):
    settings = prepare_home(
        tmp_path / "home", ("logistic_regression", "random_forest", "random_forest")
    )
    port = free_port()
    api = start_api(settings, MODELOPS_MODEL_POLL_MS="200", MODELOPS_API_WORKERS="2",
                    **webhook_env(port))  # fmt: skip
    start_worker(settings, "w1", **webhook_env(port))  # delivers the alerts
    truncated, replaced = _artifact(settings, 2), _artifact(settings, 3)
    truncated.write_bytes(truncated.read_bytes()[:-100])
    original = replaced.read_bytes()
    with receiving(port) as received, PredictLoad(api.url, clients=4) as load:
        status, _, body = http("POST", f"{api.url}/models/2/promote", None, AUTH)
        assert status == 409 and body["error"]["code"] == "artifact_error", body
        assert "version 2 cannot serve" in body["error"]["message"]
        # Damage after a promotion was checked (the store changed under it): the
        # pointer moves to version 3 and then its file is replaced by another
        # model's valid pickle; both API processes go to load it.
        replaced.write_bytes(_artifact(settings, 1).read_bytes())
        engine = make_engine(settings)
        with engine.begin() as connection:
            connection.execute(update(Champion).values(
                model_version_id=connection.scalar(
                    ModelVersion.__table__.select().with_only_columns(ModelVersion.id)
                    .where(ModelVersion.version == 3)),
                generation=Champion.generation + 1,
            ))  # fmt: skip
        engine.dispose()
        time.sleep(2)  # several polls of both API processes
        deadline = time.monotonic() + 30
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # the webhook hears of both, through the worker
        time.sleep(1)  # and of nothing more
        opened = _alerts(api.url)
        sent = sorted(body["alert"]["subject"] for _, body, ok in received if ok)
        # The file is restored: the API tries the refused champion again by itself,
        # serves it, and the alert resolves (and the webhook hears of that too).
        restored_at = time.monotonic()
        replaced.write_bytes(original)
        deadline = time.monotonic() + 30
        while not any(a.version == "3" for a in load.answers[-20:]):
            assert time.monotonic() < deadline, "the restored version never served"
            time.sleep(0.2)
        healed_after = time.monotonic() - restored_at
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
    before = [a for a in load.answers if a.started < restored_at]
    assert load.failed == []
    assert {a.version for a in before} == {"1"}  # never the damaged ones
    by_subject = {a["subject"]: a for a in opened}
    assert sorted(by_subject) == ["version:2", "version:3"], opened  # one each
    assert "still serving version 1" in by_subject["version:3"]["message"]
    assert all(a["severity"] == "critical" and a["state"] == "open" for a in opened)
    assert sent == ["version:2", "version:3"], received
    healed = {a["subject"]: a["state"] for a in _alerts(api.url)}
    assert healed == {"version:2": "open", "version:3": "resolved"}
    events = [(b["event"], b["alert"]["subject"]) for _, b, ok in received if ok]
    assert events[-1] == ("resolved", "version:3"), events
    record(
        "damaged-artifact",
        promotions_refused=1,
        requests=len(load.answers),
        failed_requests=len(load.failed),
        answers_from_a_damaged_version=sum(a.version != "1" for a in before),
        alerts_opened=len(opened),
        webhook_deliveries=len(events),
        seconds_restored_to_serving=round(healed_after, 1),
    )
