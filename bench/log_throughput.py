"""Does the prediction log keep up with the API? A million batched predictions.

Starts the default API (2 processes, prediction logging on) on a fresh home
with the demo model, and sends `--rows` predictions (1,000,000) as `--batch`-row
calls (1000) from `--clients` clients (4), as fast as it answers. Then it waits
until `GET /metrics` counts every answered row (at most `--wait` seconds after the
last answer) and reads the log writer's own counters from Prometheus: rows
written, rows dropped (spool full), rows still pending.

Run: `.venv/bin/python -m bench.log_throughput [--rows N] [--database-url URL]`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import scratch_dir
from bench.predict import server_commands, start
from common.config import Settings
from common.data import synthetic
from common.data.datasets import Dataset
from common.models.lifecycle import train_version
from common.storage.db import (
    make_engine,
    make_session_factory,
    scratch_schema,
    session_scope,
)
from common.storage.migrate import upgrade_database
from services.launcher import free_port


def prepare(home: Path, database_url: str | None) -> Settings:
    settings = Settings(home=str(home), database_url=database_url or "")
    engine = make_engine(settings)
    upgrade_database(engine)
    frame = synthetic.generate("baseline", 5000, seed=0)
    with session_scope(make_session_factory(engine)) as session:
        train_version(session, settings, Dataset("demo", frame, synthetic.TARGET),
                      model_type="logistic_regression", params={},
                      reason="bench")  # fmt: skip
    engine.dispose()
    return settings


def send(
    port: int, body: bytes, calls: int, answered: list[int], failed: list[str]
) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(calls):
        connection.request("POST", "/predict", body,
                           {"Content-Type": "application/json"})  # fmt: skip
        response = connection.getresponse()
        payload = response.read()
        if response.status == 200:
            answered.append(len(json.loads(payload)["predictions"]))
        else:
            failed.append(f"{response.status}: {payload[:200]!r}")
    connection.close()


def prometheus(url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{url}/metrics/prometheus", timeout=30) as answer:
        text = answer.read().decode()
    values = {}
    for name in ("written", "dropped", "pending", "write_failures"):
        pattern = rf"^modelops_prediction_log_{name}(?:_total)?(?:{{[^}}]*}})? "
        found = re.findall(pattern + r"([\d.e+]+)$", text, re.M)
        values[name] = sum(float(v) for v in found)
    return values


def counted(url: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics?window_minutes=120", timeout=30) as a:
        return int(json.load(a)["prediction_count"])


@contextlib.contextmanager
def own_schema(database_url: str | None) -> Iterator[str | None]:
    """PostgreSQL: a schema of the run's own, dropped after it (the database may be
    shared); SQLite: the home's file."""
    if not database_url:
        yield None
        return
    with scratch_schema(database_url, "bench") as url:
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--wait", type=float, default=120)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with own_schema(args.database_url) as database_url:
        run(args, database_url)


def run(args: argparse.Namespace, database_url: str | None) -> None:
    home = scratch_dir("bench-log-")
    settings = prepare(home, database_url)
    rows = synthetic.generate("baseline", args.batch, seed=1).drop(
        columns=synthetic.TARGET
    )
    body = json.dumps(
        {"instances": json.loads(rows.to_json(orient="records"))}
    ).encode()
    port = free_port()
    argv, env, ready = server_commands(settings, Path(), port, "modelops")
    if database_url:
        env["MODELOPS_DATABASE_URL"] = database_url
    api = start(argv, env, ready)
    url = f"http://127.0.0.1:{port}"
    report: dict[str, Any] = {"rows": args.rows, "batch": args.batch,
                              "clients": args.clients,
                              "database": "postgresql" if database_url
                              else "sqlite"}  # fmt: skip
    try:
        calls = args.rows // args.batch
        answered: list[int] = []
        failed: list[str] = []
        per_client = [calls // args.clients + (i < calls % args.clients)
                      for i in range(args.clients)]  # fmt: skip
        started = time.monotonic()
        threads = [threading.Thread(target=send, args=(port, body, n, answered, failed))
                   for n in per_client]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        answered_s = time.monotonic() - started
        total = sum(answered)
        report.update(answered_rows=total, failed_calls=len(failed),
                      answer_seconds=round(answered_s, 1),
                      answered_rows_per_s=round(total / answered_s))  # fmt: skip
        at_end = prometheus(url)
        report["pending_at_last_answer"] = at_end["pending"]
        deadline = time.monotonic() + args.wait
        seen = counted(url)
        while seen < total and time.monotonic() < deadline:
            time.sleep(1)
            seen = counted(url)
        report["counted_in_metrics"] = seen
        report["seconds_last_answer_to_counted"] = (
            round(time.monotonic() - started - answered_s, 1) if seen >= total else None
        )
        report.update({f"log_{k}": v for k, v in prometheus(url).items()})
        report["written_rows_per_s"] = round(
            report["log_written"]
            / (answered_s + (report["seconds_last_answer_to_counted"] or args.wait))
        )
        if failed:
            report["first_failure"] = failed[0]
    finally:
        api.terminate()
        api.wait(60)
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
