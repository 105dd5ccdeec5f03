"""Two models of different tasks side by side, with real processes: the demo
classifier and a regressor of the user's, registered with `modelops register` as a
user would. Drift injected into the classifier's traffic opens its alerts and none of
the regressor's, and the policy retrains the classifier by itself (the loop closes on
it) while the regressor stays quiet; the regressor's own retrain, asked by hand,
clones and refits its pipeline on its labels."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from common.data.synthetic import generate
from tests.e2e.conftest import AUTH, http, prepare_home

pytestmark = pytest.mark.e2e

NUMBERS = ["age", "tenure_months", "monthly_spend", "support_calls"]
CATEGORIES = ["plan", "region"]
LOOP = {
    "MODELOPS_DRIFT_CHECK_SECONDS": "3",
    "MODELOPS_MONITOR_INTERVAL_SECONDS": "2",
    "MODELOPS_DRIFT_WINDOW_ROWS": "300",
    "MODELOPS_DRIFT_MIN_ROWS": "200",
    "MODELOPS_RETRAIN_MIN_LABELS": "100",
    "MODELOPS_RETRAIN_RECENT_ROWS": "300",
    "MODELOPS_MODEL_POLL_MS": "200",
}


def _until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _register_regressor(home: Path) -> str:
    """A user's own pipeline, fitted elsewhere, registered with the CLI."""
    frame = generate(rows=2000, seed=7)
    features = [*NUMBERS, *CATEGORIES]
    pipeline = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("numbers", StandardScaler(), NUMBERS),
                        (
                            "categories",
                            OneHotEncoder(handle_unknown="ignore"),
                            CATEGORIES,
                        ),
                    ]
                ),
            ),
            ("model", Ridge()),
        ]
    ).fit(frame[features], frame["income"])
    sio.dump(pipeline, home / "income.skops")
    frame[[*features, "income"]].to_csv(home / "income.csv", index=False)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "register",
            "income",
            "income.skops",
            "--reference",
            "income.csv",
            "--target",
            "income",
        ],
        cwd=home,
        env={"MODELOPS_HOME": ".", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def test_drift_on_one_model_never_alerts_the_other_and_each_retrains_its_own(
    tmp_path, start_api, start_worker
):
    home = tmp_path / "home"
    settings = prepare_home(home)
    registered = _register_regressor(home)
    assert "registered income version 1 (regression, Pipeline/Ridge)" in registered
    assert "version 1 is champion of income" in registered
    api = start_api(settings, **LOOP)
    start_worker(settings, **LOOP)
    start_worker(settings, "beat", beat=True, **LOOP)

    def get(path: str) -> Any:
        status, _, body = http("GET", f"{api.url}{path}")
        assert status == 200, (path, body)
        return body

    models = {m["name"]: m for m in get("/models")["models"]}
    assert (models["default"]["task"], models["income"]["task"]) == (
        "classification",
        "regression",
    )

    # The classifier gets drifted inputs, the regressor the world it was made for.
    drifted = generate("mean_shift", rows=400, seed=11)
    baseline = generate(rows=400, seed=12)
    features = [*NUMBERS, *CATEGORIES]
    answered: list[tuple[str, float]] = []
    churn_labels: list[dict[str, Any]] = []
    for start in range(0, 400, 100):
        rows = drifted.iloc[start : start + 100]
        status, _, body = http(
            "POST",
            f"{api.url}/predict",
            {"instances": rows.drop(columns="churned").to_dict("records")},
        )
        assert status == 200
        churn_labels += [
            {"prediction_id": p["prediction_id"], "label": int(truth)}
            for p, truth in zip(body["predictions"], rows["churned"], strict=True)
        ]
        part = baseline.iloc[start : start + 100]
        status, headers, body = http(
            "POST",
            f"{api.url}/models/income/predict",
            {"instances": part[features].to_dict("records")},
        )
        assert status == 200 and headers["X-Model-Name"] == "income", body
        answered += [
            (p["prediction_id"], float(truth))
            for p, truth in zip(body["predictions"], part["income"], strict=True)
        ]

    # Drift is seen on the classifier, and alerted for it alone.
    _until(
        "dataset drift on the default model",
        lambda: get("/drift").get("dataset_drift") if _has(api, "/drift") else None,
        60,
    )
    alerts = _until(
        "the default model's drift alert",
        lambda: [
            a
            for a in get("/alerts?state=open")["alerts"]
            if a["rule"] == "dataset-drift"
        ],
        60,
    )
    assert {a["model"] for a in alerts} == {"default"}
    income_drift = _until(
        "a drift check of income",
        lambda: _has(api, "/models/income/drift") and get("/models/income/drift"),
        60,
    )
    assert income_drift["status"] == "ok" and not income_drift["dataset_drift"]
    assert income_drift["prediction"]["kind"] == "number"  # its predicted values
    assert get("/alerts?model=income")["alerts"] == []
    prometheus = http_text(f"{api.url}/metrics/prometheus")
    assert 'modelops_drift_share{model="default"}' in prometheus
    assert 'modelops_drift_share{model="income"} 0.0' in prometheus

    # The classifier's traffic goes on in the new world, with labels: its loop
    # closes by itself (it learns from what came after the drift was first seen),
    # while the other model's stays quiet.
    assert http("POST", f"{api.url}/feedback", churn_labels)[0] == 200
    more = generate("mean_shift", rows=400, seed=13)
    for start in range(0, 400, 100):
        rows = more.iloc[start : start + 100]
        status, _, body = http(
            "POST",
            f"{api.url}/predict",
            {"instances": rows.drop(columns="churned").to_dict("records")},
        )
        labels = [
            {"prediction_id": p["prediction_id"], "label": int(truth)}
            for p, truth in zip(body["predictions"], rows["churned"], strict=True)
        ]
        assert status == 200 and http("POST", f"{api.url}/feedback", labels)[0] == 200
    automatic = _until(
        "the default model's automatic retrain",
        lambda: [
            j
            for j in get("/jobs?model=default&kind=retrain")["jobs"]
            if j["reason"].startswith("automatic: dataset drift")
        ],
        90,
    )
    done = _until(
        "the automatic retrain to finish",
        lambda: (
            (j := get(f"/jobs/{automatic[0]['id']}"))["state"]
            in ("succeeded", "failed")
            and j
        ),
        120,
    )
    assert done["state"] == "succeeded", done
    assert re.match(r"\d+ labelled predictions since", done["result"]["training_data"])
    assert get("/jobs?model=income")["total"] == 0
    assert get("/models/income/retraining")["decision"] in ("healthy", "watching")

    # The regressor learns from its own labels: numbers, checked as numbers.
    labels = [{"prediction_id": pid, "label": truth} for pid, truth in answered]
    status, _, body = http("POST", f"{api.url}/feedback", labels)
    assert status == 200, body
    metrics = get("/models/income/metrics")
    assert metrics["labeled_count"] == 400 and metrics["mae"] > 0
    status, _, accepted = http(
        "POST", f"{api.url}/models/income/retrain", {"reason": "e2e"}, AUTH
    )
    assert status == 202, accepted
    job = _until(
        "the income retrain",
        lambda: (
            (j := get(f"/jobs/{accepted['job_id']}"))["state"]
            in ("succeeded", "failed")
            and j
        ),
        120,
    )
    assert job["state"] == "succeeded", job
    assert job["model"] == "income" and job["result"]["metric"] == "mae"
    assert job["result"]["model_type"] == "Pipeline/Ridge"  # the user's, refitted
    assert "400 labelled predictions" in job["result"]["training_data"]
    versions = get("/models/income/versions")["models"]
    assert [v["version"] for v in versions] == [2, 1]
    income_jobs = get("/jobs?model=income&kind=retrain")["jobs"]
    assert [j["reason"] for j in income_jobs] == ["e2e"]  # only the one asked for

    # `simulate --model`: rows of the regressor's schema (no labels to send), and
    # synthetic rows with labels for the classifier trained on them.
    from services.simulator import simulate

    # Hot swap is bounded-stale: each API worker serves v2 within its poll.
    row = {"features": baseline[features].iloc[0].to_dict()}
    _until(
        "every worker to serve income's version 2",
        lambda: all(
            http("POST", f"{api.url}/models/income/predict", row)[2]["model_version"]
            == 2
            for _ in range(10)
        ),
        30,
    )

    mine = simulate(
        api.url,
        rate=50,
        scenario=None,
        duration=1.0,
        label_delay=0.1,
        seed=5,
        model="income",
    )
    assert mine.failed == 0 and mine.answered == mine.sent > 0 and mine.labels == 0
    assert dict(mine.versions) == {2: mine.answered}
    demo = simulate(
        api.url,
        rate=50,
        scenario="baseline",
        duration=1.0,
        label_delay=0.1,
        seed=5,
        model="default",
    )
    assert demo.failed == 0 and 0 < demo.labels <= demo.answered  # due ones sent


def _has(api: Any, path: str) -> bool:
    return http("GET", f"{api.url}{path}")[0] == 200


def http_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()
