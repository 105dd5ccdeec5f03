"""Batch scoring through the job API against the in-process limit, and the worker's
peak memory for 100k and 1M rows, in one run.

The in-process limit reads the same CSV with pandas and calls the model once. The job
path is POST /jobs/batch-score to the job's end, through Redis and a worker (solo
pool, a fresh process per run so its peak memory is its own).
Run: `.venv/bin/python -m bench.batch_score [--rows 1000000] [--repeats 2]`.
With `--runtimes`: a 100-tree forest's batch scoring through scikit-learn on every
core against the default runtime choice and a baseline revision, interleaved
(`--rows 100000`), each on a fresh worker: its first job (a new process: imports,
model load, the runtime chosen) and the next two (a running worker), reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from bench import alternating
from bench.jobs_common import (
    ROOT,
    call,
    peak_rss_mb,
    start_worker,
    system,
    wait_job,
)
from bench.predict import make_model
from common.config import Settings

FOREST = {"n_estimators": 100, "max_depth": 12}
WARM_JOBS = 2  # --runtimes: jobs after the first on the same worker


def write_csv(path: Path, rows: int) -> list[str]:
    rng = np.random.default_rng(0)
    columns = [f"f{i:02d}" for i in range(20)]
    frame = pd.DataFrame(rng.normal(size=(rows, 20)), columns=columns)
    frame.insert(0, "row_id", np.arange(rows))
    frame.to_csv(path, index=False, float_format="%.6f")
    return columns


def in_process_rate(artifact: Path, path: Path, columns: list[str]) -> float:
    pipeline = joblib.load(artifact)["pipeline"]
    start = time.perf_counter()
    frame = pd.read_csv(path)
    pipeline.predict_proba(frame[columns])
    return len(frame) / (time.perf_counter() - start)


def job_run(
    api: str, env: dict[str, str], name: str, root: Path | None = None, jobs: int = 1
) -> tuple[list[float], float, int]:
    """`jobs` batch-score jobs of file `name`, one after the other, on one fresh
    worker: the rows/s of each (upload to done; the first is a new process's first
    job), the worker's peak memory, and the rows."""
    worker = start_worker(env, root=root) if root else start_worker(env)
    try:
        time.sleep(3)  # the worker connects
        rates, rows = [], 0
        for _ in range(jobs):
            start = time.perf_counter()
            job = wait_job(api, call("POST", f"{api}/jobs/batch-score",
                                     {"dataset": name})["job_id"])  # fmt: skip
            elapsed = time.perf_counter() - start
            if job["state"] != "succeeded":
                raise RuntimeError(job)
            rows = job["result"]["rows"]
            rates.append(rows / elapsed)
        return rates, peak_rss_mb(worker.pid), rows
    finally:
        worker.terminate()
        worker.wait(30)


def runtimes(rows: int, repeats: int, baseline: str) -> None:
    """The forest's batch scoring through the job path, interleaved: the worker of
    git revision `baseline` (before compiled inference: the pipeline as trained),
    this worker with MODELOPS_INFERENCE_RUNTIME=sklearn (scikit-learn on every
    core), and with the default (both runtimes timed on the first chunk, the faster
    kept). Also the model alone on the same rows, per runtime, in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(before),
                        baseline], cwd=ROOT, check=True)  # fmt: skip
        try:
            home = Path(tmp) / "home"
            make_model(home, "random_forest", FOREST)
            data = Path(Settings(home=str(home)).data_dir)
            data.mkdir(parents=True, exist_ok=True)
            write_csv(data / "rows.csv", rows)
            model_only = model_rates(home, data / "rows.csv")
            variants = (f"before ({baseline})", "sklearn", "default")
            cold: dict[str, list[float]] = {variant: [] for variant in variants}
            warm: dict[str, list[float]] = {variant: [] for variant in variants}
            with system(home) as (api, env):
                for repeat in range(repeats):
                    for variant in alternating(variants, repeat):
                        runtime = "auto" if variant == "default" else variant
                        root = before if variant.startswith("before") else None
                        worker_env = env if root else {
                            **env, "MODELOPS_INFERENCE_RUNTIME": runtime}  # fmt: skip
                        first, *later = job_run(api, worker_env, "rows.csv", root,
                                                jobs=1 + WARM_JOBS)[0]  # fmt: skip
                        cold[variant].append(first)
                        warm[variant].append(statistics.median(later))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)],
                           cwd=ROOT, check=False)  # fmt: skip
    out = sys.stdout
    out.write(f"forest {FOREST}, rows={rows} repeats={repeats} (medians)\n")
    alone = ", ".join(f"{name} {rate:.0f}" for name, rate in model_only.items())
    out.write(f"model alone, in this process, rows/s: {alone}\n")
    before_name = f"before ({baseline})"
    for label, rates in (
        ("a fresh worker's first job", cold),
        (f"a running worker's next {WARM_JOBS} jobs", warm),
    ):
        medians = {variant: statistics.median(runs) for variant, runs in rates.items()}
        out.write(f"job path (upload to done), {label}:\n")
        for variant, runs in rates.items():
            out.write(f"  {variant:<22}{medians[variant]:>10.0f} rows/s  "
                      f"({', '.join(f'{r:.0f}' for r in runs)})\n")  # fmt: skip
        ratio = medians["default"] / medians[before_name]
        # each repeat's variants ran one right after the other: their ratio is
        # the pair's, less moved by the machine's drift than the medians apart
        pairs = [a / b for a, b in zip(rates["default"], rates[before_name],
                                       strict=True)]  # fmt: skip
        out.write(f"{'PASS' if ratio >= 1.5 else 'MISS'}  default / before rows/s, "
                  f"{label}: {ratio:.2f} (target >= 1.5); per repeat "
                  f"{' '.join(f'{r:.2f}' for r in pairs)}, median "
                  f"{statistics.median(pairs):.2f}\n")  # fmt: skip


def model_rates(home: Path, path: Path) -> dict[str, float]:
    """rows/s of the champion alone on the file's rows: the pipeline as trained, on
    every core, and ONNX Runtime on one and on every core."""
    from common.models import registry
    from common.models.runtime import SklearnScorer
    from common.storage.db import make_engine, make_session_factory, session_scope

    settings = Settings(home=str(home))
    engine = make_engine(settings)
    with session_scope(make_session_factory(engine)) as session:
        version = registry.get_champion(session, settings).model_version
        session.expunge(version)
    engine.dispose()
    frame = pd.read_csv(path).drop(columns="row_id")
    cores = os.cpu_count() or 1
    pipeline = registry.load_model(settings, version)
    scorers = {
        "scikit-learn as trained": SklearnScorer(pipeline),
        "scikit-learn, every core": SklearnScorer(
            registry.on_every_core(registry.load_model(settings, version))),
        "ONNX Runtime, 1 thread": registry.load_scorer(settings, version),
        f"ONNX Runtime, {cores} threads": registry.load_scorer(settings, version,
                                                               threads=cores),
    }  # fmt: skip
    rates = {}
    for name, scorer in scorers.items():
        started = time.perf_counter()
        scorer.score_frame(frame)
        rates[name] = len(frame) / (time.perf_counter() - started)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--runtimes", action="store_true",
                        help="the forest by runtime instead (issue 17)")  # fmt: skip
    parser.add_argument("--baseline", default="3f18d9e",
                        help="--runtimes: the git revision compared with")  # fmt: skip
    args = parser.parse_args()
    if args.runtimes:
        runtimes(args.rows, args.repeats, args.baseline)
        return
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings, artifact, _ = make_model(home, "logistic_regression", {})
        data = Path(settings.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        small = args.rows // 10
        columns = write_csv(data / "large.csv", args.rows)
        write_csv(data / "small.csv", small)
        limits, rates, peaks = [], [], {"small": [], "large": []}
        with system(home) as (api, env):
            for _ in range(args.repeats):  # interleaved, so drift hits both alike
                limits.append(in_process_rate(artifact, data / "large.csv", columns))
                (rate,), peak, _ = job_run(api, env, "large.csv")
                rates.append(rate)
                peaks["large"].append(peak)
                peaks["small"].append(job_run(api, env, "small.csv")[1])
    limit, rate = statistics.median(limits), statistics.median(rates)
    small_peak, large_peak = (statistics.median(peaks[k]) for k in ("small", "large"))
    out = sys.stdout
    out.write(f"rows={args.rows} repeats={args.repeats} (medians)\n")
    out.write(f"{'path':<34}{'rows/s':>12}{'ratio':>8}\n")
    out.write(f"{'in-process (read_csv + predict)':<34}{limit:>12.0f}{1:>8.2f}\n")
    out.write(f"{'job API (upload to done)':<34}{rate:>12.0f}{rate / limit:>8.2f}\n")
    out.write(
        f"\nworker peak memory: {small:,} rows {small_peak:.0f} MB, "
        f"{args.rows:,} rows {large_peak:.0f} MB, ratio "
        f"{large_peak / small_peak:.2f}\n"
    )
    ok_rate, ok_memory = rate / limit >= 0.6, large_peak / small_peak <= 1.5
    out.write(f"{'PASS' if ok_rate else 'MISS'}  rate >= 0.6 of in-process\n")
    out.write(
        f"{'PASS' if ok_memory else 'MISS'}  1M-row peak <= 1.5 x 100k-row peak\n"
    )


if __name__ == "__main__":
    main()
