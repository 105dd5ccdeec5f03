"""The API under its server: Prometheus across workers, the simulator. (Hot swap and
SIGTERM under load and oversized bodies are fault cases: tests/faults/.)"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import AUTH, ROW, each_worker, http, prepare_home

pytestmark = pytest.mark.e2e


def test_prometheus_counts_requests_of_every_worker(tmp_path, start_api):
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
        assert _predict_requests(text) == 60


def test_a_killed_api_process_is_replaced_and_its_live_gauges_dropped(
    tmp_path, start_api
):
    """SIGKILL to one API process: the server starts another, which loads the model
    before it answers; the dead one's live gauge (log rows pending) leaves the sum,
    its request counts stay in it."""
    settings = prepare_home(tmp_path / "home")
    api = start_api(settings, MODELOPS_API_WORKERS="2")
    for _ in range(20):
        assert http("POST", f"{api.url}/predict", {"features": ROW})[0] == 200
    prometheus = Path(settings.home) / "prometheus"
    victim, survivor = psutil.Process(api.process.pid).children()
    assert (prometheus / f"gauge_livesum_{victim.pid}.db").exists()
    victim.kill()
    victim.wait(10)
    deadline = time.monotonic() + 30
    while {c.pid for c in psutil.Process(api.process.pid).children()} in (
        set(),
        {survivor.pid},
    ):
        assert time.monotonic() < deadline, "no API process replaced the killed one"
        time.sleep(0.1)
    [newcomer] = set(psutil.Process(api.process.pid).children()) - {survivor}
    assert each_worker(
        api, lambda body: body["pid"] in {survivor.pid, newcomer.pid}, 60
    )
    assert not (prometheus / f"gauge_livesum_{victim.pid}.db").exists()
    for _ in range(10):
        assert http("POST", f"{api.url}/predict", {"features": ROW})[0] == 200
    with urllib.request.urlopen(f"{api.url}/metrics/prometheus") as response:
        text = response.read().decode()
    assert _predict_requests(text) == 30  # the killed process's 200s still counted


def _predict_requests(text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "modelops_http_requests"
        for s in f.samples
        if s.name.endswith("_total") and s.labels["endpoint"] == "/predict"
    )


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
    metrics = _metrics_when(
        api.url,
        lambda m: (
            m["prediction_count"] >= tally.answered
            and m["labeled_count"] >= tally.labels
        ),
    )
    assert metrics["prediction_count"] == tally.answered
    assert metrics["labeled_count"] == tally.labels


def _metrics_when(url: str, holds: Callable[[dict], bool]) -> dict:
    """/metrics once `holds` is true of it, or as it is after 30 s (the log process
    writes every flush interval; a busy machine takes longer)."""
    deadline = time.monotonic() + 30
    while True:
        metrics = http("GET", f"{url}/metrics")[2]
        if holds(metrics) or time.monotonic() > deadline:
            return metrics
        time.sleep(0.1)


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
    metrics = _metrics_when(
        api.url, lambda m: m["data_quality"].get("unseen_category", 0) > 10
    )
    assert metrics["data_quality"].get("unseen_category", 0) > 10  # the switch took
    assert (
        http("POST", f"{api.url}/demo/drift", {"scenario": "tsunami"}, AUTH)[0] == 400
    )
