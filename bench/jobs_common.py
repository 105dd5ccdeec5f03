"""Shared by the job benchmarks: a private Redis, the API and a worker as processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.launcher import free_port, redis_command

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-key"


def call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", "X-API-Key": API_KEY})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_job(api: str, job_id: int, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = call("GET", f"{api}/jobs/{job_id}")
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise RuntimeError(f"job {job_id} did not finish")


@contextlib.contextmanager
def system(home: Path, **env_extra: str) -> Iterator[tuple[str, dict[str, str]]]:
    """Redis and the API; yields the API URL and the environment for workers."""
    redis_port, api_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    env.update(MODELOPS_HOME=str(home), MODELOPS_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
               MODELOPS_API_PORT=str(api_port), MODELOPS_API_KEY=API_KEY,
               MODELOPS_LOG_LEVEL="WARNING", **env_extra)  # fmt: skip
    redis = subprocess.Popen(redis_command(redis_port, home, append_only=False),
                             stdout=subprocess.DEVNULL)  # fmt: skip
    api = subprocess.Popen(
        [sys.executable, "-m", "services.api.serve"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                call("GET", f"{url}/livez")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url, env
    finally:
        for process in (api, redis):
            process.terminate()
            process.wait(30)


def start_worker(
    env: dict[str, str], name: str = "bench", root: Path = ROOT
) -> subprocess.Popen[bytes]:
    """A solo-pool worker running the code under `root` (another checkout: a
    baseline measured side by side)."""
    if root != ROOT:
        env = {**env, "PYTHONPATH": str(root)}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "services.worker.celery_app", "worker",
         "-Q", "training,default", "--pool", "solo", "--without-mingle",
         "--without-gossip", "--hostname", f"{name}@%h"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")
