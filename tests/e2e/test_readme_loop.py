"""The README's "Watch it notice and fix a change", step by step and with its exact
settings: `modelops up` with MODELOPS_DRIFT_CHECK_SECONDS=20 and
MODELOPS_MONITOR_INTERVAL_SECONDS=5 (nothing else), `POST /demo/reset`,
`modelops simulate --rate 20 --label-delay 2`, then the switch to `regime_change`.
The loop (a rule fires, a retrain on the labels since the change, a new champion,
every alert resolved, the policy healthy) closes within three minutes, and at every
moment the policy says what it decided and why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from services.launcher import free_port
from tests.e2e.conftest import http

pytestmark = pytest.mark.e2e

MODELOPS = Path(sys.executable).with_name("modelops")
README_SETTINGS = {
    "MODELOPS_DRIFT_CHECK_SECONDS": "20",
    "MODELOPS_MONITOR_INTERVAL_SECONDS": "5",
}
LOOP_SECONDS = 180


def _get(url: str) -> Any:
    status, _, body = http("GET", url)
    assert status == 200, (url, body)
    return body


@pytest.mark.timeout(480)  # start-up, the reset and up to three minutes of loop
def test_the_readme_demo_closes_the_loop_within_three_minutes(tmp_path, record):
    port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    output = (tmp_path / "up.out").open("wb")
    up = subprocess.Popen(
        [str(MODELOPS), "up", "--port", str(port), "--flower-port", str(flower_port)],
        cwd=tmp_path, env={**env, **README_SETTINGS}, stdout=output,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    simulate = None
    try:
        deadline = time.monotonic() + 120
        while True:
            assert up.poll() is None, (tmp_path / "up.out").read_text()[-2000:]
            try:
                if http("GET", f"{url}/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "modelops up never got ready"
            time.sleep(0.5)
        key = (tmp_path / "var" / "api_key").read_text().strip()  # as the README does
        auth = {"X-API-Key": key}
        status, _, reset = http("POST", f"{url}/demo/reset", None, auth)
        assert status == 202, reset
        _wait(lambda: _get(f"{url}/jobs/{reset['job_id']}")["state"] == "succeeded",
              90, "the demo reset")  # fmt: skip
        with (tmp_path / "simulate.out").open("wb") as simulate_log:
            simulate = subprocess.Popen(
                [str(MODELOPS), "simulate", "--url", url, "--rate", "20",
                 "--label-delay", "2", "--duration", "3600"],
                cwd=tmp_path, env={**env, "MODELOPS_API_KEY": key},
                stdout=simulate_log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        status, _, body = http("POST", f"{url}/demo/drift",
                               {"scenario": "regime_change"}, auth)  # fmt: skip
        assert status == 200, body
        switched = time.monotonic()
        decisions: list[tuple[float, str, str]] = []

        def closed() -> bool:
            policy = _get(f"{url}/retraining")
            assert policy["decision"] and policy["reason"], policy  # never silent
            if policy["decision"] == "waiting":
                assert policy["next_action_at"], policy  # says when it acts next
            decisions.append((time.monotonic() - switched, policy["decision"],
                              policy["reason"]))  # fmt: skip
            champion = _get(f"{url}/model/status")
            open_alerts = _get(f"{url}/alerts?state=open")["alerts"]
            return (champion["version"] > 1 and policy["decision"] == "healthy"
                    and not open_alerts)  # fmt: skip

        _wait(closed, LOOP_SECONDS, "the loop to close", lambda: decisions[-5:])
        took = time.monotonic() - switched
        retrains = _get(f"{url}/jobs?kind=retrain")["jobs"]
        automatic = [j for j in retrains if j["reason"].startswith("automatic: ")]
        assert automatic and all(j["state"] == "succeeded" for j in automatic)
        promoted = [j for j in automatic if j["result"]["outcome"] == "promoted"]
        assert promoted, automatic
        assert all(j["params"]["since"] for j in automatic)  # labels since the change
        champion = _get(f"{url}/model/status")["version"]
        live = _get(f"{url}/metrics?model_version={champion}")
        assert live["labeled_count"] >= 100 and live["accuracy"] >= 0.7, live
        drift = _get(f"{url}/drift")
        assert drift["model_version"] == champion and not drift["dataset_drift"]
        record("closed-loop-readme", seconds_switch_to_closed=round(took, 1),
               automatic_retrains=len(automatic), champion_version=champion,
               champion_accuracy=round(live["accuracy"], 3),
               labels_judged=live["labeled_count"])  # fmt: skip
    finally:
        if simulate is not None:
            simulate.terminate()
            simulate.wait(30)
        up.send_signal(signal.SIGTERM)
        up.wait(90)
        output.close()


def _wait(check, timeout: float, what: str, seen=lambda: None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {seen()}"
        time.sleep(1)
