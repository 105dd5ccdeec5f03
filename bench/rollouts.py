"""What a 100% shadow costs the champion: POST /predict at concurrency 32 with a
100-tree forest, with no rollout and with a shadow rollout of a second forest, on
the same server, in pairs of runs side by side (none, shadow | shadow, none | ...:
the order alternated so that a machine drifting faster or slower favours neither).

The target (issue 16): with the shadow, at least 0.85 of the requests per second
and at most 1.2 times the p99 of the runs without. On a shared machine the
throughput of one configuration moves by half between minutes, so the target is
judged on the pairs: each shadow run against its neighbour, their median, and a
90% bootstrap interval of that median, which must lie within the target
("established"). Also printed: the ratio of each configuration's median (the first
reading this benchmark gave), the server's CPU time per request, and the rows the
shadow scored and dropped (its queue full), read from Prometheus. On this machine
36 pairs gave an interval about a fifth wide, a dozen about 0.3: the default is 30
pairs of 8 s (about 10 minutes).

Run: `.venv/bin/python -m bench.rollouts [--seconds S] [--repeats PAIRS]`. Needs wrk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
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
    """Wait until both API processes follow the change (their poll)."""
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


def server_cpu_seconds(pid: int) -> float:
    """CPU time used so far by the server: granian's main process and its API
    processes."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def measure(url: str, body: dict[str, Any], pid: int, seconds: float) -> Run:
    before = server_cpu_seconds(pid)
    rate, _, p99 = wrk(f"{url}/predict", body, CONNECTIONS, seconds)
    used = server_cpu_seconds(pid) - before
    return Run(rate, p99, used * 1000 / max(rate * seconds, 1.0))


@dataclass(frozen=True)
class Run:
    rate: float  # requests per second
    p99: float  # ms
    cpu_ms: float  # the server's CPU time per request


def interval(ratios: list[float], level: float = 0.90) -> tuple[float, float]:
    """A bootstrap interval of the median of `ratios`: how far the figure could
    move with other minutes of this machine (seeded: the same pairs, the same
    interval). Pairs are treated as independent, which minutes of one run are
    only roughly."""
    draws = np.random.default_rng(0).choice(ratios, size=(10_000, len(ratios)))
    low, high = np.quantile(np.median(draws, axis=1), [(1 - level) / 2,
                                                      (1 + level) / 2])  # fmt: skip
    return float(low), float(high)


def pair_order(repeats: int) -> list[str]:
    """none, shadow | shadow, none | none, shadow ...: each pair's two runs side by
    side, the order alternated so a machine getting slower or faster through the
    run favours neither; a rollout is started or aborted once per pair."""
    order: list[str] = []
    for i in range(repeats):
        order += ["none", "shadow"] if i % 2 == 0 else ["shadow", "none"]
    return order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--repeats", type=int, default=30, help="pairs of runs")
    args = parser.parse_args()
    home = scratch_dir("bench-rollouts-")
    settings, row = make_versions(home)
    port = free_port()
    argv, env, ready = server_commands(settings, Path(), port, "modelops")
    env["MODELOPS_API_KEY"] = KEY
    url = f"http://127.0.0.1:{port}"
    server = start(argv, env, ready)
    body = {"features": row}
    runs: dict[str, list[Run]] = {"none": [], "shadow": []}
    try:
        wrk(f"{url}/predict", body, 8, 3)  # warm-up
        mode = "none"
        for wanted in pair_order(args.repeats):
            if wanted != mode:
                switch(url, body, to=wanted)
                mode = wanted
            runs[wanted].append(measure(url, body, server.pid, args.seconds))
        counts = shadow_counts(url)
    finally:
        server.terminate()
        server.wait(60)
    report(runs, counts, args)


def switch(url: str, body: dict[str, Any], to: str) -> None:
    """Start a 100% shadow rollout of version 2, or abort it; return once both
    workers follow."""
    if to == "shadow":
        call("POST", f"{url}/models/default/rollouts",
             {"version": 2, "mode": "shadow", "share": 1.0,
              "criteria": {"min_labels": 10_000_000}})  # fmt: skip
    else:
        call("POST", f"{url}/models/default/rollouts/current/abort")
    followed(url, body, shadowing=to == "shadow")


def report(
    runs: dict[str, list[Run]], counts: dict[str, float], args: argparse.Namespace
) -> None:
    say(f"forest (100 trees, depth 12, 20 features), concurrency {CONNECTIONS}, "
        f"{args.repeats} pairs of {args.seconds:g} s runs, alternated\n")  # fmt: skip
    say("| run | req/s (each) | p99 ms | server CPU ms per request |\n"
        "| --- | ---: | ---: | ---: |")  # fmt: skip
    median: dict[str, Run] = {}
    for name, each in runs.items():
        median[name] = Run(*(statistics.median(getattr(r, f) for r in each)
                             for f in ("rate", "p99", "cpu_ms")))  # fmt: skip
        rates = ", ".join(f"{r.rate:.0f}" for r in each)
        say(f"| {name} | {median[name].rate:.0f} ({rates}) | {median[name].p99:.1f} "
            f"| {median[name].cpu_ms:.3f} |")  # fmt: skip
    pairs = list(zip(runs["none"], runs["shadow"], strict=True))
    rate_pairs = [s.rate / n.rate for n, s in pairs]
    p99_pairs = [s.p99 / n.p99 for n, s in pairs]
    rate = median["shadow"].rate / median["none"].rate
    p99 = median["shadow"].p99 / median["none"].p99
    rate_low, rate_high = interval(rate_pairs)
    p99_low, p99_high = interval(p99_pairs)
    say(f"\nreq/s with a 100% shadow / without (target >= 0.85): medians {rate:.2f}; "
        f"pairs {statistics.median(rate_pairs):.2f}, 90% interval "
        f"{rate_low:.2f}-{rate_high:.2f} "
        f"({', '.join(f'{r:.2f}' for r in rate_pairs)})")  # fmt: skip
    say(f"p99 with / without (target <= 1.2): medians {p99:.2f}; "
        f"pairs {statistics.median(p99_pairs):.2f}, 90% interval "
        f"{p99_low:.2f}-{p99_high:.2f} "
        f"({', '.join(f'{r:.2f}' for r in p99_pairs)})")  # fmt: skip
    say(
        f"server CPU per request with / without: "
        f"{median['shadow'].cpu_ms / median['none'].cpu_ms:.2f}"
    )
    established = rate_low >= 0.85 and p99_high <= 1.2
    by_medians = rate >= 0.85 and p99 <= 1.2
    say(f"targets: {'established' if established else 'NOT established'} (the "
        f"pairs' 90% intervals within them); by the medians of each configuration: "
        f"{'held' if by_medians else 'missed'}")  # fmt: skip
    say(f"shadow rows scored {counts['scored']:.0f}, dropped {counts['dropped']:.0f}")


if __name__ == "__main__":
    main()
