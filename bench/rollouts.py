"""What a 100% shadow costs the champion: POST /predict at concurrency 32 with a
100-tree forest, with no rollout and with a shadow rollout of a second forest, on
the same server, interleaved (no rollout, shadow, no rollout, ...), each figure the
median of the repeats.

The target (issue 16): with the shadow, at least 0.85 of the requests per second
and at most 1.2 times the p99 of the runs without. Also reported: the rows the
shadow scored and dropped (its queue full), read from Prometheus.

Run: `.venv/bin/python -m bench.rollouts [--seconds S] [--repeats N]`. Needs wrk.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.datasets import make_classification

from bench import say, scratch_dir
from bench.predict import server_commands, start, wrk
from common.config import Settings
from common.data.datasets import Dataset
from common.models.lifecycle import train_version
from common.storage.db import make_engine, make_session_factory, session_scope
from common.storage.migrate import upgrade_database
from services.launcher import free_port

KEY = "bench-key"
CONNECTIONS = 32
FOREST = {"n_estimators": 100, "max_depth": 12}


def make_versions(home: Path) -> tuple[Settings, dict[str, float]]:
    """Version 1 (champion) and version 2, both 100-tree forests on 20 features."""
    X, y = make_classification(
        n_samples=5000, n_features=20, n_informative=10, random_state=0
    )
    frame = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(20)]).assign(target=y)
    settings = Settings(home=str(home))
    engine = make_engine(settings)
    upgrade_database(engine)
    with session_scope(make_session_factory(engine)) as session:
        for seed in (0, 1):
            train_version(session, settings, Dataset("bench", frame, "target"),
                          model_type="random_forest",
                          params={**FOREST, "random_state": seed},
                          reason="bench")  # fmt: skip
    engine.dispose()
    return settings, frame.drop(columns="target").iloc[0].to_dict()


def call(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url, method=method, data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": KEY},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def shadow_counts(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics/prometheus", timeout=30) as answer:
        text = answer.read().decode()
    counts = {}
    for name in ("scored", "dropped"):
        found = re.findall(rf"^modelops_shadow_{name}_total\{{[^}}]*\}} ([\d.e+]+)",
                           text, re.M)  # fmt: skip
        counts[name] = sum(float(v) for v in found)
    return counts


def followed(url: str, body: dict[str, Any], shadowing: bool) -> None:
    """Wait until both gunicorn workers follow the change (their poll)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        before = shadow_counts(url)["scored"]
        for _ in range(40):
            call("POST", f"{url}/predict", body)
        time.sleep(0.5)
        grew = shadow_counts(url)["scored"] - before
        if (grew >= 40) if shadowing else (grew == 0):
            return
    raise RuntimeError("the API did not follow the rollout change")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    home = scratch_dir("bench-rollouts-")
    settings, row = make_versions(home)
    port = free_port()
    argv, env, ready = server_commands(settings, Path(), port, "modelops")
    env["MODELOPS_API_KEY"] = KEY
    url = f"http://127.0.0.1:{port}"
    server = start(argv, env, ready)
    body = {"features": row}
    samples: dict[str, list[tuple[float, float, float]]] = {"none": [], "shadow": []}
    try:
        wrk(f"{url}/predict", body, 8, 3)  # warm-up
        for _ in range(args.repeats):
            samples["none"].append(
                wrk(f"{url}/predict", body, CONNECTIONS, args.seconds)
            )
            call("POST", f"{url}/models/default/rollouts",
                 {"version": 2, "mode": "shadow", "share": 1.0,
                  "criteria": {"min_labels": 10_000_000}})  # fmt: skip
            followed(url, body, shadowing=True)
            samples["shadow"].append(
                wrk(f"{url}/predict", body, CONNECTIONS, args.seconds)
            )
            call("POST", f"{url}/models/default/rollouts/current/abort")
            followed(url, body, shadowing=False)
        counts = shadow_counts(url)
    finally:
        server.terminate()
        server.wait(60)
    say(f"forest (100 trees, depth 12, 20 features), concurrency {CONNECTIONS}, "
        f"{args.repeats} repeats of {args.seconds:g} s, interleaved\n")  # fmt: skip
    say("| run | req/s | p50 ms | p99 ms |\n| --- | ---: | ---: | ---: |")
    medians = {}
    for name, runs in samples.items():
        medians[name] = [statistics.median(r[k] for r in runs) for k in range(3)]
        each = ", ".join(f"{r[0]:.0f}" for r in runs)
        say(f"| {name} | {medians[name][0]:.0f} ({each}) | {medians[name][1]:.1f} | "
            f"{medians[name][2]:.1f} |")  # fmt: skip
    ratio = medians["shadow"][0] / medians["none"][0]
    p99 = medians["shadow"][2] / medians["none"][2]
    per_repeat = [s[0] / n[0] for s, n in zip(samples["shadow"], samples["none"],
                                              strict=True)]  # fmt: skip
    say(
        f"\nreq/s with a 100% shadow / without: {ratio:.2f} (per repeat "
        f"{', '.join(f'{r:.2f}' for r in per_repeat)}; target >= 0.85)"
    )
    say(f"p99 with / without: {p99:.2f} (target <= 1.2)")
    say(f"shadow rows scored {counts['scored']:.0f}, dropped {counts['dropped']:.0f}")


if __name__ == "__main__":
    main()
