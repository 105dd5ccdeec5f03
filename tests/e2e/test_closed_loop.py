"""The monitoring loop closed, with real processes: the API, a Celery worker, beat
on short intervals, Redis, and `modelops simulate` sending traffic and late labels.

Baseline traffic raises nothing; the demo switches to `regime_change` (inputs move
and churn follows a new relation); drift is seen within two checks, alerts open, the
policy retrains on the labelled predictions since the drift, the challenger is
promoted, the new champion's accuracy recovers and the alerts resolve by themselves.

With `MODELOPS_ROLLOUT_MODE=shadow` the challenger that passed the gate first scores
live traffic in a shadow rollout, and the monitor promotes it on the labelled
evidence: the loop still closes without a person.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from common.data.synthetic import SCENARIOS
from tests.e2e.conftest import (
    AUTH,
    http,
    launch_simulator,
    prepare_home,
    stop_processes,
)

pytestmark = pytest.mark.e2e

DRIFT_CHECK_SECONDS = 6
LOOP = {
    "MODELOPS_DRIFT_CHECK_SECONDS": str(DRIFT_CHECK_SECONDS),
    "MODELOPS_MONITOR_INTERVAL_SECONDS": "2",
    "MODELOPS_DRIFT_WINDOW_ROWS": "250",
    "MODELOPS_DRIFT_MIN_ROWS": "200",
    "MODELOPS_RETRAIN_MIN_LABELS": "400",
    "MODELOPS_RETRAIN_RECENT_ROWS": "400",
    "MODELOPS_MODEL_POLL_MS": "200",
}
# The default rules, with the accuracy floor needing 200 labels: baseline accuracy
# (about 0.8) must not dip under 0.7 by chance in a window of a few dozen labels.
RULES = """
[[alert_rules]]
name = "accuracy-floor"
metric = "accuracy"
comparator = "<"
threshold = 0.7
severity = "critical"
min_samples = 200

[[alert_rules]]
name = "dataset-drift"
metric = "drift_share"
comparator = ">="
threshold = 0.3
severity = "critical"

[[alert_rules]]
name = "feature-drift"
metric = "feature_psi"
comparator = ">="
threshold = 0.1

[[alert_rules]]
name = "error-rate"
metric = "error_rate"
comparator = ">"
threshold = 0.05
min_samples = 20
"""


def _until(
    what: str, check: Callable[[], Any], timeout: float, seen: Callable[[], Any]
) -> Any:
    """`check()` once it is truthy; on timeout fail with what `seen()` shows."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what}: {seen()}"
    )


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(url: str) -> subprocess.Popen[bytes]:
        started.append(launch_simulator(url, tmp_path, rate=40, label_delay=1))
        return started[-1]

    yield start
    stop_processes(started)


SHADOW = {
    "MODELOPS_ROLLOUT_MODE": "shadow",
    "MODELOPS_ROLLOUT_MIN_LABELS": "150",
    "MODELOPS_ROLLOUT_MAX_ACCURACY_DROP": "0.05",
}


# The direct path (promoted at the gate) is what the README's demo runs
# (tests/e2e/test_readme_loop.py); here the challenger goes through a shadow rollout.
@pytest.mark.parametrize("rollout_mode", ["shadow"])
def test_drift_is_detected_alerted_retrained_and_recovered(
    tmp_path, start_api, start_worker, simulator, rollout_mode
):
    began = time.monotonic()
    home = tmp_path / "home"
    settings = prepare_home(home)
    (home / "modelops.toml").write_text(RULES)
    env = {**LOOP, "MODELOPS_CONFIG_FILE": str(home / "modelops.toml"),
           **(SHADOW if rollout_mode == "shadow" else {})}  # fmt: skip
    api = start_api(settings, **env)
    start_worker(settings, **env)
    start_worker(settings, "beat", beat=True, **env)
    traffic = simulator(api.url)

    def get(path: str) -> Any:
        status, _, body = http("GET", f"{api.url}{path}")
        assert status == 200, (path, body)
        return body

    def checks() -> list[dict[str, Any]]:
        return get("/drift/history?limit=1000")["checks"]

    def alerts(state: str) -> dict[str, dict[str, Any]]:
        return {a["rule"] + "/" + a["subject"]: a
                for a in get(f"/alerts?state={state}")["alerts"]}  # fmt: skip

    # 1. baseline traffic with labels: clean checks, accuracy fine, no alert
    _until("two clean drift checks",
           lambda: sum(c["status"] == "ok" for c in checks()) >= 2, 60,
           checks)  # fmt: skip
    baseline = get("/metrics?model_version=1")
    assert baseline["labeled_count"] >= 200 and baseline["accuracy"] > 0.7, baseline
    assert not any(c["dataset_drift"] for c in checks())
    assert get("/alerts")["alerts"] == [], "baseline traffic raised an alert"
    assert traffic.poll() is None

    # 2. the world changes
    status, _, body = http(
        "POST", f"{api.url}/demo/drift", {"scenario": "regime_change"}, AUTH
    )
    assert status == 200 and body == {"scenario": "regime_change"}
    switched, switched_at = len(checks()), time.monotonic()
    # simulate follows /demo/scenario within 2 s; the window refills in about 6 s
    drifted = _until(
        "a drifted check",
        lambda: next((c for c in checks()[switched:] if c["dataset_drift"]), None),
        4 * DRIFT_CHECK_SECONDS,
        lambda: checks()[switched:],
    )
    position = [c["id"] for c in checks()[switched:]].index(drifted["id"])
    assert position < 2, "drift took more than two checks to be seen"
    moved = set(SCENARIOS["regime_change"].features)
    assert moved <= set(drifted["drifted_features"]), drifted

    # 3. alerts open: dataset drift, each moved feature, and accuracy
    opened = _until(
        "drift and accuracy alerts",
        lambda: (a := alerts("open")) and {"dataset-drift/dataset",
                                           "accuracy-floor/model"} <= set(a) and a,
        60, lambda: (get("/alerts"), get("/metrics?model_version=1")),
    )  # fmt: skip
    assert {f"feature-drift/feature:{f}" for f in moved} <= set(opened)
    assert opened["dataset-drift/dataset"]["severity"] == "critical"

    # 4. the policy retrains on the recent labelled data, and says why
    job = _until(
        "an automatic retrain",
        lambda: next(iter(get("/jobs?kind=retrain")["jobs"]), None),
        60,
        lambda: checks()[switched:],
    )
    assert re.match(
        r"automatic: dataset drift in [23] of the last 3 checks", job["reason"]
    )
    assert job["params"]["trigger"] == "drift"
    assert moved <= set(job["params"]["evidence"]["drifted_features"])
    job = _until(
        "the retrain to finish",
        lambda: (
            (j := get(f"/jobs/{job['id']}"))["state"] in ("succeeded", "failed") and j
        ),
        90,
        lambda: get(f"/jobs/{job['id']}"),
    )
    result = job["result"]
    assert job["state"] == "succeeded", job
    assert result["training_data"].startswith(f"{result['labelled_rows']} labelled")
    assert result["labelled_rows"] >= 400
    assert result["challenger_f1"] > result["champion_f1"]
    if rollout_mode == "shadow":  # judged live first, then promoted by the monitor
        assert result["outcome"] == "rollout" and result["model_version"] == 2, result
        assert result["rollout"]["mode"] == "shadow"
        decided = _until(
            "the monitor to decide the shadow rollout",
            lambda: (r := get("/models/default/rollouts")["rollouts"][0])["state"]
            != "running" and r,
            90, lambda: get("/models/default/rollouts/current"),
        )  # fmt: skip
        assert decided["state"] == "promoted" and decided["decided_by"] == "monitor"
        evidence = decided["evidence"]
        assert min(evidence["arms"][a]["labelled"] for a in evidence["arms"]) >= 150
        assert evidence["difference"]["low"] >= -0.05, evidence["difference"]
    else:
        assert result["outcome"] == "promoted" and result["model_version"] == 2, result
    _until("version 2 to serve", lambda: get("/model/status")["version"] == 2, 30,
           lambda: get("/model/status"))  # fmt: skip

    # 5. the new champion is right again, and the alerts resolve by themselves
    # v1 on the minutes since the switch (whole minutes: the first one holds some
    # answers from before it, so this is above v1's accuracy on drifted rows alone)
    since_switch = (time.monotonic() - switched_at - 3) / 60  # simulate follows in 2 s
    drifted_accuracy = get(f"/metrics?model_version=1&window_minutes={since_switch}")[
        "accuracy"
    ]
    recovered = _until(
        "the new champion's accuracy on 200 labels",
        lambda: (m := get("/metrics?model_version=2"))["labeled_count"] >= 200 and m,
        60,
        lambda: get("/metrics?model_version=2"),
    )
    assert drifted_accuracy < 0.7, drifted_accuracy  # under the floor it alerted on
    assert recovered["accuracy"] > max(0.7, drifted_accuracy + 0.1), recovered
    # each alert resolves at the first check that no longer shows its own drift: a
    # feature may still show a little after the dataset as a whole is clean
    expected = {"dataset-drift/dataset", "accuracy-floor/model",
                *(f"feature-drift/feature:{f}" for f in moved)}  # fmt: skip
    _until(
        "the drift and accuracy alerts to resolve",
        lambda: (a := alerts("resolved")) and expected <= set(a) and a,
        60, lambda: (get("/alerts"), checks()[-3:]),
    )  # fmt: skip
    # what stays open is the rollout's decision (an event, until acknowledged)
    assert [a for a in alerts("open") if not a.startswith("rollout_")] == []
    last = checks()[-1]
    assert last["status"] == "ok" and not last["dataset_drift"]
    assert len(get("/jobs?kind=retrain")["jobs"]) == 1, "retrained more than once"
    assert traffic.poll() is None
    assert time.monotonic() - began < (180 if rollout_mode == "direct" else 240)
