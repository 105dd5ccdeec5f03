"""Soak: a steady stream of predictions and labels for a long time, with retention
set to minutes. Does anything grow, and is every row and label counted once?

Starts the whole system as `make run` does (`modelops up`, its own redis-server,
SQLite) with every retention at `--retention-minutes` (5) and pruning every 30 s,
drives `--rate` single-row predictions a second (40) with a label for each after 2 s,
for `--minutes` (30), and every `--every` seconds (30) samples: the database's size
(file and WAL), the RSS of the API processes and of the Celery worker, `GET /metrics`
latency, the log writers' pending rows (Prometheus), and the longest run of each
beat task since the last sample (the worker's log). At the end it checks the rollup
totals against what was answered and labelled, and reports each series' slope over
the samples after the first retention period (flat: the slope is small against the
level).

Run: `.venv/bin/python -m bench.soak [--minutes M] [--rate R]`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from sqlalchemy import create_engine, text

from common.data import synthetic
from services.launcher import free_port

ROOT = Path(__file__).resolve().parents[1]
MODELOPS = Path(sys.executable).with_name("modelops")
PENDING = r"^modelops_prediction_log_pending(?:\{[^}]*\})? ([\d.e+]+)$"
TASK_LINE = re.compile(r"Task ([\w.]+)\[[^\]]+\] succeeded in ([\d.]+)s")


def settings_env(retention_minutes: float) -> dict[str, str]:
    days = str(retention_minutes / (24 * 60))
    return {
        "MODELOPS_PREDICTION_RETENTION_DAYS": days,
        "MODELOPS_RETRAIN_FEEDBACK_DAYS": days,
        "MODELOPS_DRIFT_REPORT_RETENTION_DAYS": days,
        "MODELOPS_JOB_RETENTION_DAYS": days,
        "MODELOPS_ALERT_RETENTION_DAYS": days,
        "MODELOPS_PRUNE_SECONDS": "30",
        "MODELOPS_DRIFT_CHECK_SECONDS": "60",
        "MODELOPS_MONITOR_INTERVAL_SECONDS": "15",
        "MODELOPS_LOG_LEVEL": "INFO",
    }


class Traffic:
    """Predictions at a steady rate, each labelled `delay` seconds later."""

    def __init__(self, port: int, rate: float, delay: float = 2.0) -> None:
        self.port, self.rate, self.delay = port, rate, delay
        self.answered = 0
        self.failed: list[str] = []
        self.labelled = 0
        self._due: deque[tuple[float, str, int]] = deque()
        self._stop = threading.Event()
        rows = synthetic.generate("baseline", 2000, seed=3)
        self._rows = json.loads(rows.to_json(orient="records"))
        self._threads = [threading.Thread(target=self._predict),
                         threading.Thread(target=self._label)]  # fmt: skip

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        self._label_due(until=float("inf"))

    def _post(
        self, connection: http.client.HTTPConnection, path: str, body: Any
    ) -> Any:
        connection.request("POST", path, json.dumps(body),
                           {"Content-Type": "application/json"})  # fmt: skip
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            self.failed.append(f"{path} {response.status}: {payload[:200]!r}")
            return None
        return json.loads(payload)

    def _predict(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        started, sent = time.monotonic(), 0
        while not self._stop.is_set():
            row = dict(self._rows[sent % len(self._rows)])
            label = int(row.pop(synthetic.TARGET))
            answer = self._post(connection, "/predict", {"features": row})
            sent += 1
            if answer is not None:
                self.answered += 1
                self._due.append((time.monotonic() + self.delay,
                                  answer["prediction_id"], label))  # fmt: skip
            pause = started + sent / self.rate - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)

    def _label(self) -> None:
        while not self._stop.wait(1.0):
            self._label_due(until=time.monotonic())

    def _label_due(self, until: float) -> None:
        items = []
        while self._due and self._due[0][0] <= until:
            _, prediction_id, label = self._due.popleft()
            items.append({"prediction_id": prediction_id, "label": label})
        if items:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            if self._post(connection, "/feedback", items) is not None:
                self.labelled += len(items)
            connection.close()


def roles(up: psutil.Process) -> dict[str, int]:
    """RSS per role of `modelops up`'s children."""
    rss = {"api": 0, "worker": 0}
    for child in up.children(recursive=True):
        try:
            line = " ".join(child.cmdline())
            memory = child.memory_info().rss
        except psutil.Error:
            continue
        if "services.api.serve" in line:
            rss["api"] += memory
        elif "celery" in line and " worker" in line:
            rss["worker"] += memory
    return rss


def pending_rows(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics/prometheus", timeout=30) as answer:
        text_ = answer.read().decode()
    found = re.findall(PENDING, text_, re.M)
    return sum(float(v) for v in found)


def wait_written(url: str, timeout: float = 60.0) -> float:
    """Seconds until the server's API processes report no log row unwritten (the
    pending gauge, log processes' spools included)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if pending_rows(url) == 0:
            return time.monotonic() - started
        time.sleep(0.25)
    raise RuntimeError(f"{url}: log rows still pending after {timeout:.0f} s")


def metrics_ms(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as answer:
        answer.read()
    return (time.perf_counter() - started) * 1000


def task_durations(log: Path, offset: int) -> tuple[dict[str, float], int]:
    """The longest run of each task logged since `offset`, and the new offset."""
    if not log.exists():
        return {}, offset
    with log.open("rb") as file:
        file.seek(offset)
        chunk = file.read().decode(errors="replace")
        offset = file.tell()
    longest: dict[str, float] = {}
    for name, seconds in TASK_LINE.findall(chunk):
        longest[name] = max(longest.get(name, 0.0), float(seconds))
    return longest, offset


def slope_per_hour(times: list[float], values: list[float]) -> float:
    if len(times) < 3:
        return float("nan")
    return float(np.polyfit(np.array(times) / 3600, np.array(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--retention-minutes", type=float, default=5)
    parser.add_argument("--every", type=float, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    port, flower = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    env.update(settings_env(args.retention_minutes), MODELOPS_HOME=str(work / "var"))
    with (work / "up.out").open("wb") as output:
        up = subprocess.Popen(
            [str(MODELOPS), "up", "--port", str(port), "--flower-port", str(flower)],
            cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    samples: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 180
        while "ModelOps is up" not in (work / "up.out").read_text():
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((work / "up.out").read_text()[-2000:])
            time.sleep(1)
        database = work / "var" / "modelops.db"
        worker_log, offset = work / "var" / "logs" / "worker.log", 0
        process = psutil.Process(up.pid)
        started = time.monotonic()
        with Traffic(port, args.rate) as traffic:
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(args.every)
                tasks, offset = task_durations(worker_log, offset)
                wal = database.with_name(database.name + "-wal")
                sample = {
                    "t": round(time.monotonic() - started),
                    "db_mb": (database.stat().st_size
                              + (wal.stat().st_size if wal.exists() else 0)) / 1e6,
                    **{f"{k}_rss_mb": v / 1e6 for k, v in roles(process).items()},
                    "metrics_ms": statistics.median(metrics_ms(url) for _ in range(5)),
                    "log_pending": pending_rows(url),
                    "longest_task_s": max(tasks.values(), default=0.0),
                    "tasks": tasks,
                    "answered": traffic.answered,
                }  # fmt: skip
                samples.append(sample)
                sys.stderr.write(json.dumps(sample) + "\n")
        time.sleep(10)  # the writers' last flush, the label sweep
        engine = create_engine(f"sqlite:///{database}")
        with engine.connect() as connection:
            requests = connection.scalar(
                text("SELECT COALESCE(SUM(requests), 0) FROM prediction_rollups")
            )
            labelled = connection.scalar(
                text("SELECT COALESCE(SUM(labelled), 0) FROM label_rollups")
            )
            pending = connection.scalar(text(
                "SELECT COUNT(*) FROM feedback_labels WHERE pending"))  # fmt: skip
            rows_left = connection.scalar(text("SELECT COUNT(*) FROM prediction_logs"))
        engine.dispose()
        report = {
            "minutes": args.minutes, "rate": args.rate,
            "retention_minutes": args.retention_minutes,
            "answered": traffic.answered, "labels_sent": traffic.labelled,
            "failed": len(traffic.failed), "first_failure": traffic.failed[:1],
            "rollup_requests": requests, "rollup_labelled": labelled,
            "labels_pending": pending, "log_rows_left": rows_left,
        }  # fmt: skip
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(120)
    steady = [s for s in samples if s["t"] > (args.retention_minutes + 1) * 60]
    series = ("db_mb", "api_rss_mb", "worker_rss_mb", "metrics_ms", "log_pending",
              "longest_task_s")  # fmt: skip
    report["series"] = {
        name: {
            "first": round(samples[0][name], 2) if samples else None,
            "steady_mean": round(statistics.mean(s[name] for s in steady), 2)
            if steady else None,
            "steady_max": round(max(s[name] for s in steady), 2) if steady else None,
            "slope_per_hour": round(slope_per_hour([s["t"] for s in steady],
                                                   [s[name] for s in steady]), 3),
            # Warm-up (imports, first loads) ends within the steady part: the slope of
            # its later half says whether a series still grows.
            "late_slope_per_hour": round(slope_per_hour(
                [s["t"] for s in steady[len(steady) // 2:]],
                [s[name] for s in steady[len(steady) // 2:]]), 3),
        }
        for name in series
    }  # fmt: skip
    (work / "samples.json").write_text(json.dumps(samples, indent=1))
    report["samples"] = str(work / "samples.json")
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
