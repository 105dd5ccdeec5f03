"""Dispatch latency: from a job's row being queued to a worker starting it.

Submits trivial batch-scoring jobs (a 10-row CSV) one after another through the API
and reads each job's own timestamps (created_at to started_at), so client polling
does not count. Run: `.venv/bin/python -m bench.dispatch [--jobs 60]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.batch_score import write_csv
from bench.jobs_common import call, start_worker, system, wait_job
from bench.predict import make_model


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        settings, _, _ = make_model(home, "logistic_regression", {})
        data = Path(settings.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        write_csv(data / "tiny.csv", 10)
        waits, totals = [], []
        with system(home) as (api, env):
            worker = start_worker(env)
            try:
                time.sleep(3)
                for _ in range(args.jobs):
                    start = time.perf_counter()
                    body = {"dataset": "tiny.csv"}
                    queued_job = call("POST", f"{api}/jobs/batch-score", body)
                    job = wait_job(api, queued_job["job_id"])
                    totals.append((time.perf_counter() - start) * 1000)
                    queued, started = _at(job["created_at"]), _at(job["started_at"])
                    waits.append((started - queued).total_seconds() * 1000)
            finally:
                worker.terminate()
                worker.wait(30)
    out = sys.stdout
    out.write(f"jobs={args.jobs}, one worker (solo pool), one at a time\n")
    out.write(f"{'measure':<40}{'median ms':>11}{'p99 ms':>9}\n")
    for name, values in (
        ("queued -> running (job timestamps)", waits),
        ("POST -> finished, seen by a client", totals),
    ):
        p99 = statistics.quantiles(values, n=100)[98]
        out.write(f"{name:<40}{statistics.median(values):>11.1f}{p99:>9.1f}\n")


if __name__ == "__main__":
    main()
