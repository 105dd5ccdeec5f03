"""The API under gunicorn: Prometheus across workers, the simulator. (Hot swap and
SIGTERM under load and oversized bodies are fault cases: tests/faults/.)"""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import AUTH, ROW, http, prepare_home

pytestmark = pytest.mark.e2e


def test_prometheus_counts_requests_of_every_worker(tmp_path, start_api):
    from prometheus_client.parser import text_string_to_metric_families

    settings = prepare_home(tmp_path / "home")
    api = start_api(settings, MODELOPS_API_WORKERS="2")
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda _: http("POST", f"{api.url}/predict", {"features": ROW}),
                range(60),
            )
        )
    for _ in range(4):  # whichever worker answers the scrape sees all 60
        with urllib.request.urlopen(f"{api.url}/metrics/prometheus") as response:
            text = response.read().decode()
        counted = sum(
            s.value
            for f in text_string_to_metric_families(text)
            if f.name == "modelops_http_requests"
            for s in f.samples
            if s.name.endswith("_total") and s.labels["endpoint"] == "/predict"
        )
        assert counted == 60


def test_simulator_sends_predictions_then_their_labels(tmp_path, start_api):
    from services.simulator import simulate

    settings = prepare_home(tmp_path / "home")
    api = start_api(settings, MODELOPS_PREDICTION_LOG_FLUSH_MS="100")
    tally = simulate(
        api.url, rate=100, scenario="mean_shift", duration=2.0, label_delay=0.5, seed=7
    )
    # paced, never faster than asked (a slow machine may send fewer: no lower bound)
    assert tally.failed == 0 and 0 < tally.answered == tally.sent <= 100 * 2.0 + 1
    assert 0 < tally.labels <= tally.answered
    assert dict(tally.versions) == {1: tally.answered}
    time.sleep(0.5)  # the log writer's flush interval
    _, _, metrics = http("GET", f"{api.url}/metrics")
    assert metrics["prediction_count"] == tally.answered
    assert metrics["labeled_count"] == tally.labels


def test_simulator_follows_the_demo_drift_switch(tmp_path, start_api):
    import threading as _threading

    from services.simulator import simulate

    settings = prepare_home(tmp_path / "home")
    api = start_api(settings)
    assert http("GET", f"{api.url}/demo/scenario")[2] == {"scenario": "baseline"}
    result = {}
    runner = _threading.Thread(
        target=lambda: result.update(
            tally=simulate(
                api.url, rate=50, scenario=None, duration=5.0, label_delay=0.2, seed=3
            )
        )
    )
    runner.start()
    time.sleep(1.0)
    status, _, body = http(
        "POST", f"{api.url}/demo/drift", {"scenario": "new_category"}, AUTH
    )
    assert status == 200 and body == {"scenario": "new_category"}
    runner.join(30)
    assert result["tally"].failed == 0
    _, _, metrics = http("GET", f"{api.url}/metrics")
    assert metrics["data_quality"].get("unseen_category", 0) > 10  # the switch took
    assert (
        http("POST", f"{api.url}/demo/drift", {"scenario": "tsunami"}, AUTH)[0] == 400
    )
