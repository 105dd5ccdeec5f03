"""Rollouts with real processes (the API with two processes, a Celery worker, beat on
short intervals, Redis), decided by the monitor on live evidence:

- a challenger trained on shuffled labels, on a 20% canary, is aborted by itself,
  having answered fewer requests than the criteria need to show it worse (plus what
  one more look of the monitor lets through);
- a good challenger in shadow is promoted by itself;
- an A/B split over 5,000 requests lands within 3 points of its share, and a routing
  key always reaches the same arm.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.data.datasets import load_dataset
from common.data.synthetic import generate
from common.models import registry
from common.models.training import ModelTrainer
from common.rollouts.comparison import newcombe
from common.storage.db import make_engine, make_session_factory, session_scope
from tests.e2e.conftest import AUTH, Api, each_worker, http, prepare_home

pytestmark = pytest.mark.e2e

MONITOR_SECONDS = 1
LOOP = {
    "MODELOPS_MONITOR_INTERVAL_SECONDS": str(MONITOR_SECONDS),
    "MODELOPS_DRIFT_CHECK_SECONDS": "600",  # drift is not what these tests are about
    "MODELOPS_RETRAIN_ON_DRIFT": "false",
    "MODELOPS_RETRAIN_ACCURACY_FLOOR": "0",
    "MODELOPS_MODEL_POLL_MS": "200",
    "MODELOPS_PREDICTION_LOG_FLUSH_MS": "200",
}


def _until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Running:
    api: Api
    restart: Callable[[], Api]


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[Running]:
    """Champion v1, v2 as good, v3 trained on shuffled labels (logistic regressions:
    cheap to serve, so the thousands of requests below take seconds)."""
    from tests.e2e.conftest import launch_api, launch_worker, stop_processes

    folder = tmp_path_factory.mktemp("rollouts")
    settings = prepare_home(
        folder / "home", versions=("logistic_regression", "logistic_regression")
    )
    engine = make_engine(settings)
    with session_scope(make_session_factory(engine)) as session:
        frame = load_dataset(settings, "synthetic").frame.copy()
        frame["churned"] = np.random.default_rng(0).permutation(frame["churned"].values)
        result = ModelTrainer(settings).train_model(
            frame, "churned", "logistic_regression"
        )
        registry.register_model(session, settings, result, reason="shuffled labels")
    engine.dispose()
    api = launch_api(settings, redis_url, folder, **LOOP)
    processes = [
        launch_worker(settings, redis_url, folder, **LOOP),
        launch_worker(settings, redis_url, folder, "beat", beat=True, **LOOP),
    ]
    # the monitor runs once the worker takes tasks and beat sends them
    _until("the worker and beat", lambda: "ready." in _read(folder / "w1.log")
           and "Sending due task" in _read(folder / "beat.log"), 60)  # fmt: skip
    running = Running(api, lambda: restart())

    def restart() -> Api:
        port = int(running.api.url.rsplit(":", 1)[1])
        running.api.stop()
        running.api = launch_api(settings, redis_url, folder, port=port, **LOOP)
        return running.api

    yield running
    running.api.stop()
    stop_processes(processes)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _rollout(api: Api, **body: Any) -> dict[str, Any]:
    """Start a rollout, and wait until every API process has its challenger
    loaded, so all the traffic below meets it (until then a worker answers with the
    champion alone)."""
    status, _, answer = http("POST", f"{api.url}/models/default/rollouts", body, AUTH)
    assert status == 201, answer

    def follows(ready: dict[str, Any]) -> bool:
        return ready["rollouts"].get("default", {}).get("rollout_id") == answer["id"]

    assert each_worker(api, follows, 30), "a worker never followed the rollout"
    return answer


def _end(api: Api) -> None:
    """Abort a running rollout, and wait until no worker follows it any longer."""
    status, _, _ = http("GET", f"{api.url}/models/default/rollouts/current")
    if status == 200:
        http("POST", f"{api.url}/models/default/rollouts/current/abort", {}, AUTH)
    assert each_worker(api, lambda ready: "default" not in ready["rollouts"], 30), (
        "a worker kept following an ended rollout"
    )


def _traffic(api: Api, rows: Any, key: str) -> tuple[list[dict[str, Any]], list[str]]:
    """One request per row with its routing key; the answers' labels and arms."""
    labels, arms = [], []
    for index, (_, row) in enumerate(rows.iterrows()):
        features = row.drop(labels="churned").to_dict()
        status, headers, body = http("POST", f"{api.url}/predict",
                                     {"features": features,
                                      "routing_key": f"{key}-{index}"})  # fmt: skip
        assert status == 200, body
        arms.append(headers["X-Model-Arm"])
        labels.append({"prediction_id": body["prediction_id"],
                       "label": int(row["churned"])})  # fmt: skip
    return labels, arms


def _needed(champion: float, challenger: float, share: float, drop: float) -> int:
    """The fewest labelled challenger answers whose Newcombe interval shows it worse
    than `drop` (the champion answering the rest of the traffic), were the arms'
    accuracies exactly these."""
    for n in range(5, 5000):
        others = round(n * (1 - share) / share)
        interval = newcombe(round(champion * others), others, round(challenger * n), n)
        if interval["high"] is not None and interval["high"] < -drop:
            return n
    raise AssertionError("never shown worse")


def _judged(api: Api, labelled: int) -> dict[str, Any] | None:
    """Wait until the challenger's `labelled` answers are in the rollups and the
    monitor has judged them; the rollout once decided, else None."""
    from common.clock import from_iso, utcnow

    def latest() -> dict[str, Any]:
        return http("GET", f"{api.url}/models/default/rollouts")[2]["rollouts"][0]

    def caught_up() -> bool:
        status, _, current = http("GET", f"{api.url}/models/default/rollouts/current")
        if status != 200:  # decided meanwhile
            return True
        return current["comparison"]["arms"]["challenger"]["labelled"] >= labelled

    _until("the round's labels in the rollups", caught_up, 30)
    seen = utcnow()

    def looked() -> dict[str, Any] | None:
        rollout = latest()
        checked = rollout["checked_at"]
        if rollout["state"] != "running" or (checked and from_iso(checked) > seen):
            return rollout
        return None

    rollout = _until("the monitor's look at the round", looked, 30)
    return None if rollout["state"] == "running" else rollout


def test_a_bad_canary_is_aborted_having_answered_less_than_its_bound(system):
    api = system.api
    share, drop = 0.2, 0.02
    _rollout(api, version=3, mode="canary", share=share,
             criteria={"max_accuracy_drop": drop, "max_p99_ratio": 1000})  # fmt: skip
    rows = generate(rows=3000, seed=21)
    champion = http("GET", f"{api.url}/model/status")[2]["accuracy"]
    challenger = http("GET", f"{api.url}/models/default/versions/3")[2]["accuracy"]
    needed = _needed(champion, challenger, share, drop)  # holdout accuracies
    # Traffic goes on in rounds of 50 requests with their labels, as long as the
    # rollout runs; before the next round, the round's labels reach the rollups and
    # the monitor judges them (events, whatever the machine's speed). The holdout
    # accuracies only estimate the live ones: allow three rounds more.
    bound = needed + math.ceil(3 * 50 * share)
    challenger_answers, decided = 0, None
    for start in range(0, len(rows), 50):
        labels, arms = _traffic(api, rows.iloc[start : start + 50], f"bad{start}")
        challenger_answers += arms.count("challenger")
        assert http("POST", f"{api.url}/feedback", labels)[0] == 200
        decided = _judged(api, challenger_answers)
        if decided is not None:
            break
    assert decided is not None, "the bad canary was never aborted"
    assert decided["state"] == "aborted" and decided["decided_by"] == "monitor"
    assert decided["reason"].startswith("max_accuracy_drop: worse")
    assert challenger_answers < bound, (challenger_answers, needed, bound)
    assert http("GET", f"{api.url}/model/status")[2]["version"] == 1
    alerts = http("GET", f"{api.url}/alerts?state=open")[2]["alerts"]
    assert any(a["rule"] == "rollout_aborted" for a in alerts)


def test_a_good_shadow_is_promoted_by_the_monitor(system):
    api = system.api
    _end(api)
    _rollout(api, version=2, mode="shadow",
             criteria={"min_labels": 300, "max_accuracy_drop": 0.1})  # fmt: skip
    rows = generate(rows=2000, seed=22)
    decided = None
    for start in range(0, len(rows), 100):
        labels, arms = _traffic(api, rows.iloc[start : start + 100], f"good{start}")
        assert set(arms) == {"champion"}  # a shadow never answers
        assert http("POST", f"{api.url}/feedback", labels)[0] == 200
        latest = http("GET", f"{api.url}/models/default/rollouts")[2]["rollouts"][0]
        if latest["state"] != "running":
            decided = latest
            break
    assert decided is not None, "the good shadow was never decided"
    assert decided["state"] == "promoted", decided["reason"]
    assert decided["decided_by"] == "monitor"
    assert decided["evidence"]["agreement"]["compared"] >= 300
    _until(
        "version 2 to serve",
        lambda: http("GET", f"{api.url}/model/status")[2]["version"] == 2,
        30,
    )


def test_an_ab_split_holds_its_share_and_a_key_keeps_its_arm(system):
    api = system.api
    _end(api)
    champion = http("GET", f"{api.url}/model/status")[2]["version"]
    other = 1 if champion == 2 else 2
    share = 0.3
    _rollout(api, version=other, mode="ab", share=share,
             criteria={"min_labels": 1_000_000, "max_accuracy_drop": 1,
                       "max_p99_ratio": 1000})  # fmt: skip
    row = {
        k: (v.item() if hasattr(v, "item") else v)
        for k, v in generate(rows=1, seed=3).drop(columns="churned").iloc[0].items()
    }

    def ask(key: str) -> str:
        status, headers, _ = http("POST", f"{api.url}/predict",
                                  {"features": row, "routing_key": key})  # fmt: skip
        assert status == 200
        return headers["X-Model-Arm"]

    with ThreadPoolExecutor(4) as pool:
        arms = list(pool.map(ask, (f"customer-{i}" for i in range(5000))))
    landed = arms.count("challenger") / len(arms)
    assert abs(landed - share) <= 0.03, landed
    with ThreadPoolExecutor(4) as pool:
        again = list(pool.map(ask, (f"customer-{i}" for i in range(0, 5000, 10))))
    assert again == arms[::10]  # the same customer, the same arm
    _end(api)


def test_changes_under_load_fail_no_request_and_a_restart_keeps_the_rollout(system):
    api = system.api
    _end(api)
    champion = http("GET", f"{api.url}/model/status")[2]["version"]
    other = 1 if champion == 2 else 2
    row = {
        k: (v.item() if hasattr(v, "item") else v)
        for k, v in generate(rows=1, seed=4).drop(columns="churned").iloc[0].items()
    }
    failures: list[Any] = []
    answered = Counter()
    stop = threading.Event()

    def load(worker: int) -> None:
        index = 0
        while not stop.is_set():
            index += 1
            try:
                status, headers, body = http(
                    "POST", f"{system.api.url}/predict",
                    {"features": row, "routing_key": f"{worker}-{index}"},
                )  # fmt: skip
            except OSError as error:  # the restart below: connection refused
                failures.append(("error", str(error)))
                continue
            if status != 200:
                failures.append((status, body))
            else:
                answered[headers["X-Model-Arm"]] += 1

    never = {"min_labels": 1_000_000, "max_accuracy_drop": 1, "max_p99_ratio": 1000}
    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        for mode in ("canary", "shadow", "ab"):
            _rollout(api, version=other, mode=mode, share=0.5, criteria=never)
            time.sleep(1.5)  # under load, beside the champion, for a few polls
            action = "promote" if mode == "shadow" else "abort"
            status, _, body = http(
                "POST", f"{api.url}/models/default/rollouts/current/{action}", {}, AUTH
            )
            assert status == 200, body
            if action == "promote":
                champion, other = other, champion
            time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert answered["challenger"] > 0 and answered["champion"] > 0

    # A restart resumes the running rollout with its counts.
    _rollout(api, version=other, mode="canary", share=0.5, criteria=never)
    keys = [f"restart-{i}" for i in range(200)]

    def arm_of(url: str, key: str) -> str:
        answer = http("POST", f"{url}/predict", {"features": row, "routing_key": key})
        return answer[1]["X-Model-Arm"]

    def arms_of(url: str) -> list[str] | None:
        """Each key's arm, once two passes agree (every API process follows)."""
        first = [arm_of(url, k) for k in keys]
        return first if first == [arm_of(url, k) for k in keys] else None

    before = _until("every worker to follow", lambda: arms_of(api.url), 30)

    def counted() -> dict[str, Any]:
        return http("GET", f"{system.api.url}/models/default/rollouts/current")[2]

    def arms_total(current: dict[str, Any]) -> int:
        arms = current["comparison"]["arms"]
        return arms["champion"]["requests"] + arms["challenger"]["requests"]

    def settled() -> dict[str, Any] | None:
        """The rollout once its counts stop moving (every spooled row written)."""
        first = counted()
        time.sleep(1.5)
        second = counted()
        same = arms_total(first) == arms_total(second) > 0
        return second if same else None

    seen = _until("the answers in the rollups", settled, 30)
    restarted = system.restart()
    after = counted()
    assert after["id"] == seen["id"] and arms_total(after) == arms_total(seen)
    again = _until("every worker to follow again", lambda: arms_of(restarted.url), 30)
    assert again == before  # each key, its arm, after the restart
    assert set(before) == {"champion", "challenger"}
    _end(restarted)
