"""Case 8: the alert webhook is down for a while. Each attempt is stored and retried
with backoff; the alert stays open meanwhile; once the receiver is back the event is
delivered, once, with a valid signature."""

from __future__ import annotations

import time

import pytest

from services.launcher import free_port
from tests.e2e.conftest import ROW, http, prepare_home
from tests.faults.webhook import receiving, webhook_env

pytestmark = pytest.mark.faults

RULE = """
[[alert_rules]]
name = "any_traffic"
metric = "latency_p99_ms"
comparator = ">="
threshold = 0
severity = "warn"
min_samples = 1
window_minutes = 15
cooldown_minutes = 30
"""


def test_a_webhook_down_for_a_while_gets_the_alert_once_it_is_back(
    tmp_path, start_api, start_worker, record
):
    port = free_port()
    config = tmp_path / "modelops.toml"
    config.write_text(RULE)
    env = {
        "MODELOPS_CONFIG_FILE": str(config),
        **webhook_env(port),
        "MODELOPS_ALERT_WEBHOOK_ATTEMPTS": "8",
        "MODELOPS_MONITOR_INTERVAL_SECONDS": "2",
    }
    settings = prepare_home(tmp_path / "home")
    api = start_api(settings, **env)
    start_worker(settings, "beat", beat=True, **env)
    start_worker(settings, "w1", **env)
    for _ in range(5):
        assert http("POST", f"{api.url}/predict", {"features": ROW})[0] == 200

    def alert() -> dict | None:
        found = http("GET", f"{api.url}/alerts")[2]["alerts"]
        return next((a for a in found if a["rule"] == "any_traffic"), None)

    deadline = time.monotonic() + 90
    while True:  # the receiver is down: attempts fail and are retried
        current = alert()
        failed = [d for d in (current or {}).get("deliveries", [])
                  if d["channel"] == "webhook" and d["status"] == "failed"]  # fmt: skip
        if len(failed) >= 2:
            break
        assert time.monotonic() < deadline, current
        time.sleep(0.5)
    assert current["state"] == "open"

    with receiving(port) as received:
        back_at = time.monotonic()
        deadline = time.monotonic() + 90
        while not any(d["status"] == "delivered" for d in alert()["deliveries"]
                      if d["channel"] == "webhook"):  # fmt: skip
            assert time.monotonic() < deadline, alert()
            time.sleep(0.5)
        delivered_after = time.monotonic() - back_at
        time.sleep(5)  # a duplicate would arrive by now
    final = alert()
    webhook = [d for d in final["deliveries"] if d["channel"] == "webhook"]
    opened = [body for _, body, ok in received if body["event"] == "opened" and ok]
    assert len(opened) == 1 and opened[0]["alert"]["id"] == final["id"]
    assert [d["status"] for d in webhook].count("delivered") == 1
    assert final["state"] == "open"
    record(
        "webhook-down",
        failed_attempts_while_down=sum(d["status"] == "failed" for d in webhook),
        deliveries_after_back=len(opened),
        duplicates=len(opened) - 1,
        alert_state=final["state"],
        seconds_from_back_to_delivered=round(delivered_after, 1),
    )
