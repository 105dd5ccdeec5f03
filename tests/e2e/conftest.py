"""Servers as real processes: the API server (granian), on free loopback ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import Headers

from common.config import Settings
from common.data.datasets import load_dataset
from common.models import registry
from common.models.lifecycle import train_version
from common.storage.db import make_engine, make_session_factory, session_scope
from common.storage.migrate import upgrade_database
from services.launcher import free_port

API_KEY = "e2e-key"
AUTH = {"X-API-Key": API_KEY}
ROW = {
    "age": 40, "income": 50000.0, "tenure_months": 12, "monthly_spend": 70.5,
    "support_calls": 2, "usage_hours": 20.0, "plan": "basic", "region": "north",
}  # fmt: skip


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, Headers, Any]:
    """One HTTP call with a JSON body; returns status, headers (by any case: HTTP
    header names are case-insensitive, and the server sends them in lower case) and
    the parsed JSON."""
    data = None if body is None else json.dumps(body).encode()
    return send(method, url, data, {"Content-Type": "application/json",
                                     **(headers or {})}, timeout)  # fmt: skip


def send(
    method: str,
    url: str,
    data: bytes | None,
    headers: dict[str, str],
    timeout: float = 30,
) -> tuple[int, Headers, Any]:
    """One HTTP call with the body as given (raw JSON text, multipart); returns
    status, headers and the parsed JSON answer."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return (
                response.status,
                Headers(response.headers.items()),
                json.loads(response.read()),
            )
    except urllib.error.HTTPError as error:
        return (
            error.code,
            Headers(error.headers.items()),
            json.loads(error.read() or b"null"),
        )


def result_request(url: str, job_id: int) -> urllib.request.Request:
    """The download of a batch job's scored file, with the key it needs."""
    return urllib.request.Request(f"{url}/jobs/{job_id}/result", headers=AUTH)


@dataclass
class Api:
    url: str
    process: subprocess.Popen[bytes]
    settings: Settings
    log_path: Path
    workers: int

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(60)


def prepare_home(
    home: Path,
    versions: tuple[str, ...] = ("logistic_regression",),
    database_url: str = "",
) -> Settings:
    """A migrated database (SQLite in `home` unless given another) with one trained
    version per model type; v1 is champion."""
    settings = Settings(
        home=str(home), demo_rows=2000, api_key=API_KEY, database_url=database_url
    )
    engine = make_engine(settings)
    upgrade_database(engine)
    with session_scope(make_session_factory(engine)) as session:
        dataset = load_dataset(settings, "synthetic")
        for index, model_type in enumerate(versions):
            train_version(
                session,
                settings,
                dataset,
                model_type=model_type,
                reason="e2e",
                promote=index == 0,
            )
        assert registry.get_champion(session, settings).model_version.version == 1
    engine.dispose()
    return settings


def _service_env(settings: Settings) -> dict[str, str]:
    """The environment of a service on `settings.home`, named as `make run` names it:
    a relative home (the process starts in its parent) and the paths under it derived,
    so a path resolved against the wrong directory fails here as it would for a user.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    env["MODELOPS_HOME"] = Path(settings.home).name
    env["MODELOPS_DEMO"] = "on"  # what `modelops up` hands its children
    if settings.database_url != Settings(home=settings.home).database_url:
        env["MODELOPS_DATABASE_URL"] = settings.database_url  # not the derived one
    return env


def launch_api(
    settings: Settings,
    redis_url: str,
    log_dir: Path,
    port: int | None = None,
    **env_overrides: str,
) -> Api:
    """Start the API server on a prepared home and wait until it is ready: one API
    process (with its log process), unless the test asks for more with
    `MODELOPS_API_WORKERS` (what several processes share, each swapping models and
    logging on its own, is tested where it matters; `modelops up` keeps the default
    of two). Each API process costs seconds of CPU to start on a busy machine."""
    port = port or free_port()
    env = _service_env(settings)
    env.update({
        "MODELOPS_API_PORT": str(port), "MODELOPS_REDIS_URL": redis_url,
        "MODELOPS_API_KEY": API_KEY, "MODELOPS_DEMO_ROWS": "2000",
        "MODELOPS_LOG_LEVEL": "WARNING", "MODELOPS_API_WORKERS": "1",
        **env_overrides,
    })  # fmt: skip
    log_path = log_dir / f"api-{port}.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.api.serve"],
            env=env, stdout=log_file, stderr=subprocess.STDOUT,
            cwd=Path(settings.home).parent,
        )  # fmt: skip
    workers = int(env["MODELOPS_API_WORKERS"])
    api = Api(f"http://127.0.0.1:{port}", process, settings, log_path, workers)
    # Ready means every API process has its model, not the first to answer: a
    # test that changes the champion at once would otherwise race a late worker.
    if not each_worker(api, lambda body: True, timeout=60):
        api.stop()
        raise AssertionError(f"API not ready: {log_path.read_text()[-2000:]}")
    return api


def each_worker(
    api: Api, holds: Callable[[dict[str, Any]], bool], timeout: float
) -> bool:
    """Whether every API process's ready answer came to satisfy `holds` within
    `timeout` (each answer names its process; a worker is asked until it answers)."""
    satisfied: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api.process.poll() is not None:
            raise AssertionError(api.log_path.read_text())
        try:
            status, _, body = http("GET", f"{api.url}/readyz", timeout=2)
            if status == 200:
                if holds(body):
                    satisfied.add(body["pid"])
                if len(satisfied) >= api.workers:
                    return True
                time.sleep(0.05)  # ask again soon: another worker may take it
                continue
        except OSError:
            pass
        time.sleep(0.2)
    return False


def launch_worker(
    settings: Settings,
    redis_url: str,
    log_dir: Path,
    name: str = "w1",
    *,
    beat: bool = False,
    **env_overrides: str,
) -> subprocess.Popen[bytes]:
    """Start `celery worker` (or `beat`) in its own process group, so a test can kill
    it whole."""
    env = _service_env(settings)
    env.update({"MODELOPS_REDIS_URL": redis_url, "MODELOPS_DEMO_ROWS": "2000",
                "MODELOPS_LOG_LEVEL": "INFO", **env_overrides})  # fmt: skip
    celery = [sys.executable, "-m", "celery", "-A"]
    argv = (
        [*celery, "services.scheduler.beat", "beat",
         "--schedule", str(log_dir / f"{name}-schedule")]
        if beat else
        [*celery, "services.worker.celery_app", "worker", "-Q", "training,default",
         "--pool", "solo", "--hostname", f"{name}@%h", "--without-mingle",
         "--without-gossip"]
    )  # fmt: skip
    with (log_dir / f"{name}.log").open("ab") as log_file:
        return subprocess.Popen(
            argv, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=Path(settings.home).parent,
        )  # fmt: skip


def launch_simulator(
    url: str, log_dir: Path, *, rate: float, label_delay: float
) -> subprocess.Popen[bytes]:
    """`modelops simulate` following the demo scenario, until stopped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELOPS_")}
    with (log_dir / "simulate.log").open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "simulate", "--url", url,
             "--rate", str(rate), "--label-delay", str(label_delay),
             "--duration", "3600"],
            env={**env, "MODELOPS_API_KEY": API_KEY},
            stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop what a test started (by PID), the whole group if it will not stop."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


@pytest.fixture(autouse=True)
def empty_broker(redis_url: str) -> None:
    """Each test starts with no task left in Redis by an earlier one: the tests share
    one redis-server, and a stale task names a job of another test's database."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()


@pytest.fixture
def start_api(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., Api]]:
    """Start the API server on a prepared home; every server is stopped at the end."""
    started: list[Api] = []

    def start(settings: Settings, **env_overrides: str) -> Api:
        api = launch_api(settings, redis_url, tmp_path, **env_overrides)
        started.append(api)
        return api

    yield start
    for api in started:
        api.stop()


@pytest.fixture
def start_worker(
    tmp_path: Path, redis_url: str
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `celery worker` (or `beat`) processes on a prepared home; all stopped at
    the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        settings: Settings,
        name: str = "w1",
        *,
        beat: bool = False,
        **env_overrides: str,
    ) -> subprocess.Popen[bytes]:
        process = launch_worker(
            settings, redis_url, tmp_path, name, beat=beat, **env_overrides
        )
        started.append(process)
        return process

    yield start
    stop_processes(started)
