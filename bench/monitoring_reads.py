"""Monitoring reads with millions of logged predictions in the window, against the
code before the rollups, in one run.

Fills a SQLite home with `--rows` predictions (5 million by default) spread over the
last `--minutes` (15: the default `/metrics` window), a fifth of them labelled,
written as the API's log writer writes them (log rows, rollups, labels). Filling
takes minutes, so the reads then use a window reaching back to the oldest row
(every row in it, the API told the same). Then, with the same database:

- **before rollups**: `compute_window_metrics` as it was before the rollups (loaded
  from git, `--baseline`, by default the commit before them), in-process: it reads
  every row of the window;
- **rollups, in-process**: today's `compute_window_metrics` and `metric_history`;
- **rollups, HTTP**: `GET /metrics` and `GET /metrics/history?hours=24` through the
  default API (2 processes), timed per request from a client;
- **drift check**: the rows a drift check reads (its own window, by index);
- **dashboard**: the overview page in Chromium (Debian's), from navigation until its
  cards and charts are filled (skipped without Chromium).

Each read is repeated (`--repeats`) and reported as its median (p50) and max.

Run: `.venv/bin/python -m bench.monitoring_reads [--rows N] [--home DIR]` (without
`--home` the filled home is temporary; with it, kept, and reused as it is next time).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select

from bench import say, scratch_dir
from bench.predict import make_model, server_commands, start
from common.clock import as_utc, utcnow
from common.config import Settings
from common.monitoring import drift_checks
from common.monitoring.metrics import compute_window_metrics, metric_history
from common.monitoring.prediction_log import write_predictions
from common.monitoring.rollups import RollupWriter
from common.storage.db import make_engine, make_session_factory, session_scope
from common.storage.tables import FeedbackLabel, PredictionLog
from services.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "469c7c7"  # the last commit whose metrics read the raw log
CHUNK = 20_000


def fill(settings: Settings, rows: int, minutes: float, version_id: int) -> float:
    """Log `rows` predictions over the last `minutes`, as the log writer does."""
    started = time.monotonic()
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    writer = RollupWriter()
    rng = np.random.default_rng(0)
    now = utcnow()
    features = {f"f{i:02d}": 0.5 for i in range(20)}
    written = 0
    while written < rows:
        size = min(CHUNK, rows - written)
        ages = np.sort(rng.uniform(0, minutes * 60, size))[::-1]
        batch = [{
            "prediction_id": uuid.uuid4().hex, "model": "default",
            "model_version_id": version_id, "model_version": 1, "features": features,
            "prediction": str(int(p)), "confidence": float(c),
            "probabilities": None, "latency_ms": float(ms), "status_code": 200,
            "data_quality": None, "request_rows": 1,
            "created_at": now - timedelta(seconds=float(a)),
        } for a, p, c, ms in zip(
            ages, rng.integers(0, 2, size), rng.uniform(0.5, 1, size),
            rng.lognormal(1.5, 0.5, size), strict=True,
        )]  # fmt: skip
        with session_scope(factory) as session:
            session.add_all(FeedbackLabel(prediction_id=r["prediction_id"], label="1")
                            for r in batch[::5])  # fmt: skip
            session.flush()
            touched = write_predictions(session, batch, writer)
        writer.adopt(touched)
        written += size
        sys.stderr.write(f"  filled {written:,}/{rows:,} rows\r")
    sys.stderr.write("\n")
    engine.dispose()
    return time.monotonic() - started


def baseline_metrics(commit: str) -> Any:
    """`compute_window_metrics` of `commit`, imported from git's copy of the file."""
    source = subprocess.run(
        ["git", "show", f"{commit}:common/monitoring/metrics.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # Its snapshot table is gone (migration 0011); the window read never used it.
    source = source.replace("    MetricSnapshot,\n", "", 1)
    path = scratch_dir("bench-reads-") / "metrics_before_rollups.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("metrics_before_rollups", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_window_metrics


def timed(call: Any, repeats: int) -> tuple[float, float, Any]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000, max(seconds) * 1000, result


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as answer:
        return answer.read()


def dashboard_ms(url: str, repeats: int) -> list[float] | None:
    if not Path("/usr/bin/chromium").exists():
        return None
    from playwright.sync_api import sync_playwright

    timings = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = browser.new_page()
        for _ in range(repeats):
            page.goto("about:blank")  # each load a whole page load (a cold cache's
            started = time.perf_counter()  # first one included)
            page.goto(f"{url}/#overview")
            # The overview fills its cards and sets its charts in one step, once
            # /metrics, the history, the drift history and the policy have answered
            # (dashboard/static/js/overview.js). (Waiting for "networkidle" instead
            # would add Playwright's 500 ms of quiet to every figure.)
            page.locator("#cards .card").first.wait_for()
            timings.append((time.perf_counter() - started) * 1000)
        browser.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    home = args.home or scratch_dir("bench-reads-")
    settings = Settings(home=str(home))
    if not (home / "modelops.db").exists():
        settings, _, _ = make_model(home, "logistic_regression", {})
        seconds = fill(settings, args.rows, args.minutes, version_id=1)
        say(f"filled {args.rows:,} rows in {seconds:.0f} s into {home}")
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    before = baseline_metrics(args.baseline)
    figures: list[tuple[str, float, float]] = []
    with session_scope(factory) as session:
        # Filling took minutes: the window reaches back to the oldest row, so every
        # row is in it when it is read (the API is told the same window below).
        oldest = session.scalar(select(func.min(PredictionLog.created_at)))
        assert oldest is not None, "the home has no logged predictions"
        window = math.ceil((utcnow() - as_utc(oldest)).total_seconds() / 60) + 5
        p50, worst, old = timed(
            lambda: before(session, "default", minutes=window), args.repeats
        )
        figures.append(("GET /metrics logic, before rollups (in-process)", p50, worst))
        p50, worst, new = timed(
            lambda: compute_window_metrics(session, "default", minutes=window),
            args.repeats,
        )
        figures.append(("GET /metrics logic, rollups (in-process)", p50, worst))
        p50, worst, _ = timed(
            lambda: metric_history(session, "default", hours=24), args.repeats
        )
        figures.append(("GET /metrics/history?hours=24 logic (in-process)", p50, worst))
        p50, worst, _ = timed(
            lambda: drift_checks.recent_inputs(session, 1, settings.drift_window_rows),
            args.repeats,
        )
        figures.append(("a drift check's read of its window", p50, worst))
    say(
        f"before rollups: {old['request_count']:,} requests, accuracy "
        f"{old['accuracy']}; rollups: {new['request_count']:,}, {new['accuracy']}"
    )
    port = free_port()
    argv, env, ready = server_commands(settings, Path(), port, "modelops")
    env["MODELOPS_METRICS_WINDOW_MINUTES"] = str(window)
    api = start(argv, env, ready)
    try:
        url = f"http://127.0.0.1:{port}"
        http_get(f"{url}/metrics")  # warm: imports, first connection
        for path in ("/metrics", "/metrics/history?hours=24"):
            target = f"{url}{path}"
            p50, worst, _ = timed(lambda t=target: http_get(t), args.repeats * 4)
            figures.append((f"GET {path} over HTTP (rollups)", p50, worst))
        pages = dashboard_ms(url, args.repeats)
        if pages:
            figures.append(("dashboard overview loaded in Chromium",
                            statistics.median(pages), max(pages)))  # fmt: skip
    finally:
        api.terminate()
        api.wait(30)
    engine.dispose()
    say(f"\n{new['request_count']:,} predictions in the {window}-minute window "
        f"({args.repeats} repeats)\n")  # fmt: skip
    say("| read | p50 ms | max ms |\n| --- | ---: | ---: |")
    for name, p50, worst in figures:
        say(f"| {name} | {p50:,.1f} | {worst:,.1f} |")


if __name__ == "__main__":
    main()
