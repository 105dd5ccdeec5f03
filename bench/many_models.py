"""Many models behind one API: 50 registered pipelines against one of them alone.

Registers 50 user pipelines (skops files, checked in their child process like any
registration): logistic regressions, random forests of 50 trees, histogram gradient
boosting, and regressors (forests and ridge), with 5 to 50 features. Then, with the
default API (2 processes, settings defaults), in one run and interleaved:

- **single**: wrk at concurrency 32 on `/models/<m00>/predict` only (a 50-tree forest
  on 20 features, the most requested model), a server that never loads another;
- **many**: wrk at concurrency 32 over all 50 models, requests spread with a Zipf
  skew (s = 1.1: the first model gets about a fifth), every champion in memory;
- **evicting**: the same spread with `MODELOPS_MODEL_CACHE_MB` too small to hold
  them all, so models are dropped and loaded again under load: failed requests are
  counted, and each API process's RSS is sampled against the budget + 300 MB.

Also times the cold load of each model type (verify, unpickle, warm) in-process.

Run: `.venv/bin/python -m bench.many_models [--seconds S] [--repeats N]`. Needs wrk.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import skops.io as sio
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench import scratch_dir
from bench.predict import run_wrk, server_commands, start
from common.config import Settings
from common.models import registry
from common.models.importing import ImportRequest, register_file
from common.storage.db import make_engine, make_session_factory, session_scope
from common.storage.migrate import upgrade_database
from services.api.model_cache import load_serving
from services.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
MODELS = 50
CONCURRENCY = 32
ZIPF_S = 1.1
KINDS = (
    "random_forest",
    "logistic_regression",
    "hist_gradient_boosting",
    "forest_regressor",
    "ridge_regressor",
)
LUA = """
local targets = {targets}
local cumulative = {cumulative}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local r = math.random()
  local i = 1
  while cumulative[i] < r do i = i + 1 end
  return wrk.format(nil, targets[i][1], nil, targets[i][2])
end
"""


def estimator(kind: str, seed: int) -> Any:
    return {
        "random_forest": lambda: RandomForestClassifier(50, random_state=seed),
        "logistic_regression": lambda: LogisticRegression(max_iter=500),
        "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(
            max_iter=50, random_state=seed
        ),
        "forest_regressor": lambda: RandomForestRegressor(50, random_state=seed),
        "ridge_regressor": lambda: Ridge(),
    }[kind]()


def model_spec(index: int) -> tuple[str, str, int]:
    """(name, kind, features): the first a 50-tree forest on 20 features."""
    if index == 0:
        return "m00", "random_forest", 20
    return f"m{index:02d}", KINDS[index % len(KINDS)], 5 + (index * 9) % 46


def build(index: int, folder: Path) -> tuple[Path, Path, dict[str, float]]:
    """Fit model `index`, write its skops file and reference CSV; one example row."""
    name, kind, features = model_spec(index)
    columns = [f"x{i:02d}" for i in range(features)]
    if kind.endswith("regressor"):
        X, y = make_regression(
            3000, features, n_informative=min(features, 8), noise=5, random_state=index
        )
    else:
        X, y = make_classification(
            3000,
            features,
            n_informative=min(features, 5),
            n_redundant=0,
            random_state=index,
        )
    frame = pd.DataFrame(X, columns=columns)
    pipeline = make_pipeline(StandardScaler(), estimator(kind, index)).fit(frame, y)
    artifact, reference = folder / f"{name}.skops", folder / f"{name}.csv"
    sio.dump(pipeline, artifact)
    frame.assign(target=y).to_csv(reference, index=False)
    return (
        artifact,
        reference,
        {c: round(float(v), 4) for c, v in frame.iloc[0].items()},
    )


def register_all(home: Path) -> dict[str, dict[str, float]]:
    """Every model registered (and so champion); returns an example row of each."""
    settings = Settings(home=str(home))
    engine = make_engine(settings)
    upgrade_database(engine)
    factory = make_session_factory(engine)
    rows: dict[str, dict[str, float]] = {}
    folder = scratch_dir("bench-models-")
    for index in range(MODELS):
        name = model_spec(index)[0]
        artifact, reference, rows[name] = build(index, folder)
        trusted = tuple(sio.get_untrusted_types(file=artifact))  # the operator's own
        with session_scope(factory) as session:
            register_file(
                session,
                settings,
                ImportRequest(
                    name=name,
                    artifact=artifact,
                    filename=artifact.name,
                    reference=reference,
                    target="target",
                    trusted_types=trusted,
                ),
            )
        sys.stderr.write(f"\rregistered {index + 1}/{MODELS}")
    sys.stderr.write("\n")
    engine.dispose()
    return rows


def example_rows(home: Path) -> dict[str, dict[str, float]]:
    """An example row of each model registered in `home`, from its input schema."""
    from common.data.processing import example_features

    settings = Settings(home=str(home))
    engine = make_engine(settings)
    rows = {}
    with session_scope(make_session_factory(engine)) as session:
        for index in range(MODELS):
            name = model_spec(index)[0]
            champion = registry.get_champion(session, settings.for_model(name))
            rows[name] = example_features(registry.input_schema(champion.model_version))
    engine.dispose()
    return rows


def cold_loads(home: Path) -> tuple[dict[str, float], float, dict[str, list[str]]]:
    """Median seconds to verify, load and warm one champion, per model type; the
    memory (MB) all the champions take in the cache's measure; and the runtime each
    serves with, per model type."""
    settings = Settings(home=str(home))
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    runtimes: dict[str, list[str]] = {kind: [] for kind in KINDS}
    total = 0
    with session_scope(factory) as session:
        for index in range(MODELS):
            name, kind, _ = model_spec(index)
            scoped = settings.for_model(name)
            champion = registry.get_champion(session, scoped)
            started = time.perf_counter()
            loaded = load_serving(scoped, factory, name, champion.model_version,
                           champion.generation)  # fmt: skip
            times[kind].append(time.perf_counter() - started)
            runtimes[kind].append(loaded.runtime)
            total += loaded.size_bytes
    engine.dispose()
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    return medians, total / 2**20, runtimes


def zipf_script(rows: dict[str, dict[str, float]], names: list[str]) -> str:
    weights = np.array([1 / (rank + 1) ** ZIPF_S for rank in range(len(names))])
    cumulative = np.cumsum(weights / weights.sum())
    cumulative[-1] = 1.0
    bodies = {name: json.dumps(json.dumps({"features": rows[name]})) for name in names}
    targets = ", ".join(f'{{"/models/{n}/predict", {bodies[n]}}}' for n in names)
    return LUA.format(
        targets=f"{{{targets}}}",
        cumulative="{" + ", ".join(f"{c:.6f}" for c in cumulative) + "}",
    )


def wrk(url: str, script: str, seconds: float) -> dict[str, float]:
    out = run_wrk(url, script, CONCURRENCY, seconds)
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), "
        r"timeout (\d+)",
        out,
    )
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "failed": int(failed.group(1)) if failed else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def api(home: Path, cache_mb: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    # ModelOps' API as bench/predict.py starts it (logging on), with this home
    argv, env, ready = server_commands(
        Settings(home=str(home)), Path(), port, "modelops"
    )
    env.update(MODELOPS_DEFAULT_MODEL="m00", MODELOPS_MODEL_CACHE_MB=str(cache_mb))
    return start(argv, env, ready), f"http://127.0.0.1:{port}"


class RssSampler(threading.Thread):
    """The largest RSS of each API process of `master`, sampled while it runs."""

    def __init__(self, master: int) -> None:
        super().__init__(daemon=True)
        self.master, self.peak_mb, self.running = master, 0.0, True

    def run(self) -> None:
        while self.running:
            for child in psutil.Process(self.master).children():
                try:
                    rss = child.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.peak_mb = max(self.peak_mb, rss)
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--evict-share",
        type=float,
        default=0.5,
        help="Share of all the models' memory the evicting budget holds.",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="Reuse the models registered by an earlier run here.",
    )
    args = parser.parse_args()
    home = args.home or scratch_dir("bench-many-")
    rows = example_rows(home) if args.home else register_all(home)
    names = [model_spec(i)[0] for i in range(MODELS)]
    loads, total_mb, runtimes = cold_loads(home)
    evict_mb = max(1, round(total_mb * args.evict_share))
    single_script = zipf_script(rows, ["m00"])
    many_script = zipf_script(rows, names)
    servers = {"single": api(home, 1024), "many": api(home, 1024)}
    try:
        for _name, (_, url) in servers.items():  # warm: every model in "many"
            wrk(url, single_script if _name == "single" else many_script, 5)
        runs: dict[str, list[dict[str, float]]] = {"single": [], "many": []}
        for _ in range(args.repeats):
            for name, (_, url) in servers.items():
                runs[name].append(
                    wrk(
                        url,
                        single_script if name == "single" else many_script,
                        args.seconds,
                    )
                )
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(60)
    evicting, url = api(home, evict_mb)
    sampler = RssSampler(evicting.pid)
    sampler.start()
    try:
        churn = wrk(url, many_script, args.seconds * 2)
    finally:
        sampler.running = False
        evicting.terminate()
        evicting.wait(60)
    single = statistics.median(r["rate"] for r in runs["single"])
    many = statistics.median(r["rate"] for r in runs["many"])
    report = {
        "models": MODELS,
        "concurrency": CONCURRENCY,
        "single_rps": [r["rate"] for r in runs["single"]],
        "many_rps": [r["rate"] for r in runs["many"]],
        "ratio_median": many / single,
        "ratios_per_repeat": [
            m["rate"] / s["rate"]
            for s, m in zip(runs["single"], runs["many"], strict=True)
        ],
        "warm_failed": sum(
            r["failed"] + r["socket_errors"] for run in runs.values() for r in run
        ),
        "evicting": {
            **churn,
            "cache_mb": evict_mb,
            "all_models_mb": total_mb,
            "peak_worker_rss_mb": sampler.peak_mb,
            "rss_bound_mb": evict_mb + 300,
        },
        "cold_load_seconds": loads,
        "runtimes": {kind: {r: found.count(r) for r in set(found)}
                     for kind, found in runtimes.items()},
    }  # fmt: skip
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
