"""Scale-out: batch-scoring throughput with one worker process and with two on one
Redis, measured side by side in one run.

Each round submits the same jobs (a CSV of 20 numeric features, logistic regression)
through the API at once and times from the first POST to the last job's end; the
one- and two-worker rounds alternate so the machine's drift hits both alike.
Run: `.venv/bin/python -m bench.workers [--jobs 12 --rows 100000 --repeats 3]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.batch_score import write_csv
from bench.jobs_common import call, start_worker, system, wait_job
from bench.predict import make_model


def _round(
    api: str, env: dict[str, str], workers: int, jobs: int
) -> tuple[float, Counter[str]]:
    processes = [start_worker(env, f"w{index}") for index in range(workers)]
    try:
        time.sleep(4)  # both consuming before the first job arrives
        start = time.perf_counter()
        ids = [
            call("POST", f"{api}/jobs/batch-score", {"dataset": "rows.csv"})["job_id"]
            for _ in range(jobs)
        ]
        finished = [wait_job(api, ident) for ident in ids]
        elapsed = time.perf_counter() - start
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
    if any(job["state"] != "succeeded" for job in finished):
        raise RuntimeError(f"a job failed: {finished}")
    return elapsed, Counter(job["worker"].split("@")[0] for job in finished)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    shares: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        make_model(home, "logistic_regression", {})
        data = home / "data"
        data.mkdir(parents=True, exist_ok=True)
        write_csv(data / "rows.csv", args.rows)
        with system(home) as (api, env):
            for _ in range(args.repeats):
                for workers in (1, 2):
                    elapsed, by_worker = _round(api, env, workers, args.jobs)
                    times[workers].append(elapsed)
                    if workers == 2:
                        shares.update(by_worker)
    rows = args.jobs * args.rows
    out = sys.stdout
    out.write(f"jobs={args.jobs} x {args.rows:,} rows, repeats={args.repeats} "
              "(medians), solo pool, one Redis, API on the same host\n")  # fmt: skip
    out.write(
        f"{'workers':<10}{'seconds':>9}{'rows/s':>11}{'jobs/min':>10}{'ratio':>7}\n"
    )
    base = statistics.median(times[1])
    for workers, values in times.items():
        median = statistics.median(values)
        per_minute = args.jobs * 60 / median
        out.write(f"{workers:<10}{median:>9.2f}{rows / median:>11,.0f}"
                  f"{per_minute:>10.1f}{base / median:>7.2f}\n")  # fmt: skip
    out.write(f"jobs taken with two workers, all rounds: {dict(shares)}\n")


if __name__ == "__main__":
    main()
