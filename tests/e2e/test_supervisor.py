"""`modelops up` as a supervisor: each child SIGKILLed under prediction traffic is
restarted and counted, predictions go on while a worker, beat, Flower or Redis
restarts, a job the dead worker held completes once, a child that keeps crashing is
given up on while the rest run, and losing Redis for good stops the system with the
reason (the API is essential the same way: tests/unit/test_launcher.py). Started the
way `make run` starts it: a relative home."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path

import psutil
import pytest
import redis

from common.data import synthetic
from services.launcher import free_port
from tests.e2e.conftest import API_KEY, AUTH, ROW, http, result_request

pytestmark = pytest.mark.e2e

MODELOPS = Path(sys.executable).with_name("modelops")
ROWS = 300_000


@dataclass
class Load:
    """/predict in a loop from one thread; every failure kept with its time."""

    url: str
    sent: int = 0
    failures: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status = http("POST", f"{self.url}/predict", {"features": ROW},
                              timeout=5)[0]  # fmt: skip
                if status != 200:
                    self.failures.append((time.monotonic(), f"HTTP {status}"))
            except (OSError, HTTPException) as error:  # refused, or cut off mid-answer
                self.failures.append((time.monotonic(), str(error)))
            self.sent += 1
            time.sleep(0.01)


@dataclass
class System:
    process: subprocess.Popen[bytes]
    url: str
    home: Path
    output: Path

    def processes(self) -> dict:
        return http("GET", f"{self.url}/readyz", timeout=5)[2]["processes"]

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.output.read_text()[-3000:]
            try:
                if check():
                    return
            except (OSError, HTTPException, ValueError, KeyError, TypeError):
                # the API itself may be restarting: refused, or an answer cut off by
                # a worker of the killed master as it exits
                pass
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def kill(self, name: str) -> int:
        """SIGKILL the child's own process (not its group), as the kernel would."""
        pid = self.processes()[name]["pid"]
        os.kill(pid, signal.SIGKILL)
        return pid

    def restarted(self, name: str, times: int) -> Callable[[], bool]:
        def check() -> bool:
            info = self.processes()[name]
            return info["restarts"] >= times and info["state"] == "running"

        return check


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """One `modelops up` for the module: the restarts first, then the give-ups,
    which end it."""
    tmp_path = tmp_path_factory.mktemp("supervisor")
    api_port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    env.update(
        MODELOPS_HOME="var", MODELOPS_API_KEY=API_KEY, MODELOPS_DEMO_ROWS="1000",
        MODELOPS_API_WORKERS="1", MODELOPS_WORKER_CONCURRENCY="1",
        MODELOPS_JOB_HEARTBEAT_SECONDS="1", MODELOPS_JOB_STALL_SECONDS="6",
        MODELOPS_SCORE_CHUNK_ROWS="20000", MODELOPS_LOG_LEVEL="INFO",
    )  # fmt: skip
    output = tmp_path / "up.out"
    with output.open("wb") as log:
        process = subprocess.Popen(
            [str(MODELOPS), "up", "--port", str(api_port), "--flower-port",
             str(flower_port)],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    running = System(process, f"http://127.0.0.1:{api_port}", tmp_path / "var", output)
    children: list[psutil.Process] = []
    try:
        # Started: every child up (Flower last), not only the API answering.
        running.wait("the system", lambda: "ModelOps is up" in output.read_text(), 120)
        children = psutil.Process(process.pid).children(recursive=True)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait(90)
        children += [c for c in psutil.process_iter() if _under(c, tmp_path)]
        psutil.wait_procs(children, timeout=10)
        for child in children:  # nothing of this test may outlive it
            if child.is_running():
                child.kill()


def _under(process: psutil.Process, home: Path) -> bool:
    try:
        return str(home) in process.cwd()
    except psutil.Error:
        return False


def _prometheus(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics/prometheus", timeout=5) as answer:
        return answer.read().decode()


def test_each_child_killed_under_load_is_restarted_and_predictions_go_on(
    system: System, record
):
    data = system.home / "data"
    data.mkdir(exist_ok=True)
    frame = synthetic.generate("baseline", ROWS, 3).drop(columns="churned")
    frame.insert(0, "row_id", range(ROWS))
    frame.to_csv(data / "big.csv", index=False)
    essential = {name: p["essential"] for name, p in system.processes().items()}
    assert essential == {
        "redis": True,
        "api": True,
        "worker": False,
        "beat": False,
        "flower": False,
    }  # losing these two for good stops it all
    load = Load(system.url)
    thread = threading.Thread(target=load.run, daemon=True)
    thread.start()
    try:
        # A worker killed mid-job: restarted, and the job completes once.
        _, _, body = http("POST", f"{system.url}/jobs/batch-score",
                          {"dataset": "big.csv"}, AUTH)  # fmt: skip
        job_url = f"{system.url}/jobs/{body['job_id']}"
        system.wait("the job to run", lambda: http("GET", job_url)[2]["progress"] >= 15)
        system.kill("worker")
        killed_at = time.monotonic()
        system.wait("the worker back", system.restarted("worker", 1))
        worker_back = time.monotonic() - killed_at
        system.wait("the job", lambda: http("GET", job_url)[2]["state"] == "succeeded",
                    180)  # fmt: skip
        job = http("GET", job_url)[2]
        assert job["attempts"] == 2 and job["result"]["scored"] == ROWS
        with urllib.request.urlopen(result_request(system.url, body["job_id"])) as f:
            ids = [int(r[0]) for r in csv.reader(f.read().decode().splitlines()[1:])]
        assert sorted(ids) == list(range(ROWS))  # every row once
        worker = system.processes()["worker"]
        assert (worker["exits"], worker["last_exit_code"]) == (1, -9)

        # Beat and Flower: restarted in about a second each.
        for name in ("beat", "flower"):
            system.kill(name)
            system.wait(f"{name} back", system.restarted(name, 1), 30)

        # Redis: restarted on its port with its data (AOF under var/redis).
        client = redis.Redis.from_url(_redis_url(system))
        client.set("modelops-e2e-marker", "kept")
        time.sleep(1.5)  # appendfsync everysec
        system.kill("redis")
        system.wait("redis back", system.restarted("redis", 1), 30)
        system.wait("the broker", lambda: http("GET", f"{system.url}/readyz")[0] == 200)
        assert client.get("modelops-e2e-marker") == b"kept"
        assert list((system.home / "redis").rglob("*.aof"))
        quiet_until = time.monotonic()
        assert load.failures == [], load.failures[:5]  # worker, beat, Flower, Redis

        # The API server's main process: down for its restart only.
        system.kill("api")
        api_killed = time.monotonic()
        system.wait("the API back", system.restarted("api", 1))
        system.wait("the API ready", lambda: http("GET", f"{system.url}/readyz",
                                                  timeout=2)[0] == 200)  # fmt: skip
        api_down = time.monotonic() - api_killed
        sent_after = load.sent
        system.wait("predictions again", lambda: load.sent > sent_after + 20)
        late = [f for f in load.failures if f[0] > api_killed + api_down]
        assert late == [], late[:5]
    finally:
        load.stop.set()
        thread.join(10)
    assert all(at >= quiet_until for at, _ in load.failures)

    text = _prometheus(system.url)
    for name in ("worker", "beat", "flower", "redis", "api"):
        assert f'modelops_process_restarts_total{{process="{name}"}} 1.0' in text
        assert f'modelops_process_up{{process="{name}"}} 1.0' in text
    log = system.output.read_text()
    assert "worker was killed by SIGKILL; restarting in 1 s" in log
    record("supervisor-restarts", predictions_sent=load.sent,
           failed_while_worker_beat_flower_redis_restarted=0,
           seconds_worker_back=round(worker_back, 1),
           seconds_api_down=round(api_down, 1), jobs_completed_once=1)  # fmt: skip


def test_a_crashing_child_is_given_up_and_losing_redis_stops_everything(
    system: System,
):
    # Five exits within five minutes and a child is given up on; the test above
    # killed each once, a minute or so ago (none when this test runs alone).
    first = system.processes()["flower"]["exits"] + 1
    for crash in range(first, 6):  # Flower, up to its fifth exit
        system.wait("flower running", lambda: system.processes()["flower"]["state"]
                    == "running", 60)  # fmt: skip
        system.kill("flower")
        if crash < 5:
            system.wait("flower back", system.restarted("flower", crash), 60)
    system.wait("flower given up", lambda: system.processes()["flower"]["state"]
                == "given_up")  # fmt: skip
    assert http("POST", f"{system.url}/predict", {"features": ROW})[0] == 200
    assert http("GET", f"{system.url}/readyz")[0] == 200  # the rest keep running
    log = system.output.read_text()
    assert log.count("giving up on flower") == 1
    assert "flower was killed by SIGKILL, its 5th exit within 300 s" in log
    first = system.processes()["redis"]["exits"] + 1
    for crash in range(first, 6):  # now Redis, for good (the API is as essential)
        system.wait("Redis running", lambda: system.processes()["redis"]["state"]
                    == "running", 60)  # fmt: skip
        system.kill("redis")
        if crash < 5:
            system.wait("Redis back", system.restarted("redis", crash), 60)
    assert system.process.wait(120) == 1
    log = system.output.read_text()
    assert "ModelOps cannot run without its redis. Stopping." in log
    assert log.rstrip().endswith("stopped")


def _redis_url(system: System) -> str:
    for line in system.output.read_text().splitlines():
        if line.startswith("redis "):
            return line.split()[1]
    raise AssertionError("modelops up printed no Redis URL")
