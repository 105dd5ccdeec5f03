"""`modelops up` on a fresh home with no MODELOPS_REDIS_URL: everything starts, answers,
and SIGTERM leaves no process behind (Redis included)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from services.launcher import free_port

pytestmark = pytest.mark.e2e

MODELOPS = Path(sys.executable).with_name("modelops")


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


def _wait_ready(url: str, process: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        assert process.poll() is None, f"modelops up exited with {process.returncode}"
        try:
            status, body = _get(url)
            if status == 200:
                return body
            last = body
        except OSError as error:
            last = error
        time.sleep(0.5)
    raise AssertionError(f"not ready after {timeout}s: {last}")


def test_up_starts_everything_and_sigterm_stops_everything(tmp_path, record):
    api_port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    env.update(
        MODELOPS_HOME=str(tmp_path / "var"),
        MODELOPS_DEMO_ROWS="1000",
        MODELOPS_API_WORKERS="1",
        MODELOPS_WORKER_CONCURRENCY="1",
        MODELOPS_DRIFT_CHECK_SECONDS="2",  # must reach beat and the worker
        MODELOPS_FLOWER_BASIC_AUTH="admin:flower-e2e-secret",
    )
    output = (tmp_path / "up.out").open("wb")
    process = subprocess.Popen(
        [
            str(MODELOPS),
            "up",
            "--port",
            str(api_port),
            "--flower-port",
            str(flower_port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    children: list[psutil.Process] = []
    try:
        api = f"http://127.0.0.1:{api_port}"
        ready = _wait_ready(f"{api}/readyz", process, timeout=120)
        assert ready["checks"] == {"database": "ok", "broker": "ok", "model": "ok"}

        status, model = _get(f"{api}/model/status")
        assert status == 200
        assert (model["version"], model["state"], model["dataset"]) == (
            1,
            "champion",
            "synthetic",
        )
        assert model["reason"] == "demo model for an empty registry"
        demo = _get(f"{api}/demo/scenario")  # demo mode is on under `modelops up`
        assert demo == (200, {"scenario": "baseline"})

        deadline = time.monotonic() + 30  # a drift check every 2 s, as configured
        while not _get(f"{api}/drift/history")[1]["checks"]:
            assert time.monotonic() < deadline, "the children ignored the settings"
            time.sleep(0.5)

        flower = f"http://127.0.0.1:{flower_port}"
        assert _get(f"{flower}/healthcheck")[0] == 200
        assert _get(f"{flower}/api/workers")[0] == 401  # basic auth is on
        login = base64.b64encode(b"admin:flower-e2e-secret").decode()
        request = urllib.request.Request(
            f"{flower}/api/workers", headers={"Authorization": f"Basic {login}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

        children = psutil.Process(process.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        for part in ("redis-server", "worker", "beat", "services.api.serve", "flower"):
            assert part in names
        assert "flower-e2e-secret" not in names  # credentials never on a command line
        listening = {
            (c.laddr.ip, c.laddr.port)
            for child in children
            for c in child.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        addresses = {ip for ip, _ in listening}
        assert {api_port, flower_port} <= {port for _, port in listening}
        assert addresses == {"127.0.0.1"}  # loopback unless configured otherwise
        outside = sum(ip != "127.0.0.1" for ip, _ in listening)
        record("security-loopback", listening_sockets=len(listening),
               not_on_loopback=outside)  # fmt: skip
        text = (tmp_path / "up.out").read_text()
        assert f"{api}/" in text and "api key" in text and "flower" in text
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(90)
        output.close()
    assert code == 0, (tmp_path / "up.out").read_text()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], [p.cmdline() for p in alive]
    text = (tmp_path / "up.out").read_text()
    order = [
        text.index(f"stopping {name} pid")
        for name in ("api", "flower", "beat", "worker", "redis")
    ]
    assert order == sorted(order), "stop order must be API first, Redis last"
    assert text.rstrip().endswith("stopped")


def test_up_with_an_unreachable_redis_url_says_so_and_starts_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    env.update(
        MODELOPS_HOME=str(tmp_path / "var"), MODELOPS_REDIS_URL="redis://127.0.0.1:9/0"
    )
    result = subprocess.run(
        [
            str(MODELOPS),
            "up",
            "--port",
            str(free_port()),
            "--flower-port",
            str(free_port()),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "error: broker unreachable" in result.stderr
    assert not (tmp_path / "var" / "logs").exists()  # no child was started
