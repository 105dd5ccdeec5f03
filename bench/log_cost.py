"""What prediction logging costs the API, by where the log is written, in one run.

For a model (`--model`: the logistic regression or the forest of bench/predict.py,
compiled) it starts three API servers at once, each on a copy of one home (its own
database): logging off, logging from a thread of each API process
(`MODELOPS_PREDICTION_LOG_PROCESS=false`) and logging from each API process's log
process (the default). wrk drives each at concurrency 32, the runs interleaved
(every server once, then again), `--repeats` times; after each run it waits until
that server's log has written every row (its pending gauge), so no server's run
shares the machine with another's writing. For each server it reports the median
req/s and p99, the ratio to logging off per repeat, and the CPU time its processes
(the server, its API processes and their children, from /proc) used per request, to
the end of its writing: on a shared machine that moves less than req/s does. At
the end it counts the rows each logging server wrote and how long each took to be
written after its run.

Run: `.venv/bin/python -m bench.log_cost [--model logistic_regression] [--repeats 6]`.
Needs wrk (Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import func, select

from bench import alternating
from bench.predict import MODELS, make_model, server_commands, start, wrk, wrk_counting
from bench.soak import wait_written
from common.config import Settings
from common.storage.db import make_engine
from common.storage.tables import PredictionLog
from services.launcher import free_port

SECONDS = 4
CONNECTIONS = 32
# name: (logging on, written from a log process)
VARIANTS = {
    "logging off": (False, True),
    "log thread": (True, False),
    "log process": (True, True),
}


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of `pid` and every process below it."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1]
            total += int(fields.split()[11]) + int(fields.split()[12])
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text()
                todo += [int(child) for child in children.split()]
        except OSError:
            continue  # it ended meanwhile
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", choices=sorted(MODELS), default="logistic_regression"
    )
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="modelops-log-cost-"))
    try:
        run(base, args.model, args.repeats)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run(base: Path, model: str, repeats: int) -> None:
    settings, artifact, row = make_model(base / "model", model, MODELS[model])
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    homes: dict[str, Settings] = {}
    try:
        for name, (logging, process) in VARIANTS.items():
            home = base / name.replace(" ", "-")
            shutil.copytree(base / "model", home)
            homes[name] = settings.with_overrides(home=str(home), database_url="")
            port = free_port()
            argv, env, ready = server_commands(
                homes[name], artifact, port, "modelops", "onnx", logging
            )
            env["MODELOPS_PREDICTION_LOG_PROCESS"] = "true" if process else "false"
            servers[name] = (start(argv, env, ready), f"http://127.0.0.1:{port}")
        body = {"features": row}
        for _, url in servers.values():
            wrk(f"{url}/predict", body, 8, 2)  # warm-up (and the log processes up)
        rates: dict[str, list[float]] = {name: [] for name in servers}
        p99s: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        failed = dict.fromkeys(servers, 0)
        drains: dict[str, list[float]] = {name: [] for name in servers}
        for repeat in range(repeats):
            for name, (process, url) in alternating(list(servers.items()), repeat):
                before = tree_cpu_seconds(process.pid)
                rate, _, p99, errors = wrk_counting(
                    f"{url}/predict", body, CONNECTIONS, SECONDS
                )
                # the next server's run starts once this one's log is written, its
                # CPU counted with this one's requests
                drains[name].append(wait_written(url))
                used = tree_cpu_seconds(process.pid) - before
                rates[name].append(rate)
                p99s[name].append(p99)
                cpu[name].append(used / (rate * SECONDS) * 1e6)
                failed[name] += errors
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(60)
    report(model, repeats, rates, p99s, cpu, failed, homes)
    for name, seconds in drains.items():
        if VARIANTS[name][0]:
            _say(f"{name}: every row written {statistics.median(seconds):.2f} s "
                 f"after its run (median; longest {max(seconds):.2f} s)")  # fmt: skip


def report(
    model: str,
    repeats: int,
    rates: dict[str, list[float]],
    p99s: dict[str, list[float]],
    cpu: dict[str, list[float]],
    failed: dict[str, int],
    homes: dict[str, Settings],
) -> None:
    _say(f"{model}, c={CONNECTIONS}, {repeats} interleaved repeats of {SECONDS} s")
    _say(f"{'server':<13}{'req/s':>8}{'p99 ms':>8}{'CPU us/req':>12}"
          f"{'vs off':>8}  per repeat vs off{'':<18}failed")  # fmt: skip
    off = rates["logging off"]
    for name in rates:
        ratio = statistics.median(rates[name]) / statistics.median(off)
        each = " ".join(f"{a / b:.2f}" for a, b in zip(rates[name], off, strict=True))
        _say(f"{name:<13}{statistics.median(rates[name]):>8.0f}"
              f"{statistics.median(p99s[name]):>8.1f}"
              f"{statistics.median(cpu[name]):>12.0f}{ratio:>8.2f}  {each:<35} "
              f"{failed[name]}")  # fmt: skip
    for name, settings in homes.items():
        if VARIANTS[name][0]:
            engine = make_engine(settings)
            with engine.connect() as connection:
                rows = connection.scalar(
                    select(func.count()).select_from(PredictionLog)
                )
            engine.dispose()
            _say(f"{name}: {rows} rows logged")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


if __name__ == "__main__":
    main()
