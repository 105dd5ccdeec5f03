"""`modelops up`: the whole system on one machine, as supervised child processes.

A private Redis (unless `MODELOPS_REDIS_URL` is set), migrations, the demo model for
an empty registry, then worker, beat, API and Flower. A child that exits is restarted
with backoff; one that keeps crashing is given up on, and losing Redis or the API
that way stops the system. Stopped in order on Ctrl-C or SIGTERM, the API first and
Redis last.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session, sessionmaker

from common.broker import check_broker
from common.config import Settings
from common.data.datasets import load_dataset
from common.errors import AppError
from common.models.lifecycle import registry_is_empty, train_version
from common.storage.db import session_scope
from common.storage.migrate import migrated_sessions
from services import launcher
from services.console import ProgressBar, echo_version

log = logging.getLogger(__name__)


def _api_key_file(settings: Settings) -> Path:
    return Path(settings.home) / "api_key"


def describe_api_key(settings: Settings) -> str:
    """Where `modelops up` takes the API key from when MODELOPS_API_KEY is unset."""
    path = _api_key_file(settings)
    if path.is_file():
        return f"(unset: modelops up uses the key kept in {path})"
    return f"(unset: modelops up generates one and keeps it in {path})"


def _api_key(settings: Settings) -> str:
    """The configured key, else the one kept in `<home>/api_key`, else a new one."""
    if settings.api_key:
        return settings.api_key
    path = _api_key_file(settings)
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    key = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n", encoding="utf-8")
    return key


def run_system(settings: Settings) -> int:
    """Bring everything up, wait for Ctrl-C or SIGTERM, stop everything. Exit code."""
    home = Path(settings.home)
    # The children read the same MODELOPS_* settings as this process (intervals,
    # webhook, thresholds...), with the values it resolved (ports, paths, Redis).
    env = dict(os.environ)
    env.update(
        {f"MODELOPS_{k.upper()}": str(v) for k, v in _child_settings(settings).items()}
    )
    supervisor = launcher.Supervisor(log_dir=home / "logs", env=env, home=home)
    stopping: list[bool] = []
    launcher.install_stop_handlers(lambda: stopping.append(True))
    try:
        launcher.ensure_port_free(settings.api_host, settings.api_port, "API")
        launcher.ensure_port_free(settings.flower_host, settings.flower_port, "Flower")
        if settings.redis_url:
            check_broker(settings.redis_url, timeout_seconds=3)  # fail fast, say why
        else:
            redis_url = _start_redis(supervisor, home)
            env["MODELOPS_REDIS_URL"] = redis_url
            settings = settings.with_overrides(redis_url=redis_url)
        env["MODELOPS_API_KEY"] = _api_key(settings)
        prepare_database(settings)
        if not stopping:
            _start_services(supervisor, settings)
            _announce(settings, env["MODELOPS_API_KEY"], home)
        while not stopping:
            fatal = supervisor.watch()  # restarts what exited, with backoff
            if fatal:
                click.echo(f"error: {fatal}. Stopping.", err=True)
                return 1
            time.sleep(0.25)
        return 0
    except AppError as exc:
        reason = exc.details.get("reason")
        click.echo(f"error: {exc.message}{f' ({reason})' if reason else ''}", err=True)
        return 1
    finally:
        click.echo("stopping…", err=True)
        supervisor.stop_all()
        click.echo("stopped", err=True)


def _child_settings(settings: Settings) -> dict[str, Any]:
    return {
        "home": settings.home,
        "redis_url": settings.redis_url,
        "api_host": settings.api_host,
        "api_port": settings.api_port,
        "flower_host": settings.flower_host,
        "flower_port": settings.flower_port,
        "database_url": settings.database_url,
        "artifact_dir": settings.artifact_dir,
        "data_dir": settings.data_dir,
        "log_level": settings.log_level,
        "demo": "on" if settings.demo == "auto" else settings.demo,  # embedded default
        "config_file": str(Path(settings.config_file).resolve()),
    }


def _start_redis(supervisor: launcher.Supervisor, home: Path) -> str:
    port = launcher.free_port()
    data_dir = home / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    child = supervisor.start(
        "redis", launcher.redis_command(port, data_dir, append_only=True),
        essential=True,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    launcher.wait_until(launcher.redis_ok(url), 20, "redis-server", child)
    click.echo(f"redis      {url} (private, pid {child.process.pid})")
    return url


def prepare_database(settings: Settings) -> None:
    """Apply migrations and train the demo model when the registry is empty."""
    with migrated_sessions(settings) as factory:
        with session_scope(factory) as session:
            if not registry_is_empty(session, settings):
                return
        _train_demo_model(settings, factory)


def _train_demo_model(settings: Settings, factory: sessionmaker[Session]) -> None:
    dataset = load_dataset(settings, settings.demo_dataset)
    with session_scope(factory) as session, ProgressBar("demo model") as progress:
        trained = train_version(
            session,
            settings,
            dataset,
            model_type=settings.demo_model_type,
            reason="demo model for an empty registry",
            promote=True,
            progress=progress,
        )
    echo_version(trained.version.version, trained.result.metrics.to_dict(), True)


def _start_services(supervisor: launcher.Supervisor, settings: Settings) -> None:
    python = sys.executable
    level = settings.log_level.lower()
    supervisor.start(
        "worker",
        [
            python,
            "-m",
            "celery",
            "-A",
            "services.worker.celery_app",
            "worker",
            "-E",
            "-Q",
            "training,default",
            "--concurrency",
            str(settings.worker_concurrency),
            "--hostname",
            "worker@%h",
            "--loglevel",
            level,
        ],
    )
    supervisor.start(
        "beat",
        [
            python,
            "-m",
            "celery",
            "-A",
            "services.scheduler.beat",
            "beat",
            "--loglevel",
            level,
            "--schedule",
            str(Path(settings.home) / "celerybeat-schedule"),
            "--pidfile",
            str(Path(settings.home) / "beat.pid"),
        ],
    )
    api = supervisor.start(
        "api",
        [python, "-m", "services.api.serve"],
        essential=True,
    )
    flower_argv = [
        python, "-m", "celery", "-A", "services.worker.celery_app", "flower",
        f"--address={settings.flower_host}", f"--port={settings.flower_port}",
    ]  # fmt: skip
    # Flower reads its credentials from FLOWER_BASIC_AUTH: never on a command line,
    # where `ps` shows them to every user of the machine.
    credentials = {"FLOWER_BASIC_AUTH": settings.flower_basic_auth}
    flower = supervisor.start(
        "flower", flower_argv, credentials if settings.flower_basic_auth else None
    )
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    launcher.wait_until(launcher.http_ok(f"{api_url}/livez"), 60, "the API", api)
    flower_url = f"http://{settings.flower_host}:{settings.flower_port}/healthcheck"
    launcher.wait_until(launcher.http_ok(flower_url), 60, "Flower", flower)


def _announce(settings: Settings, api_key: str, home: Path) -> None:
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    click.echo(f"dashboard  {api_url}/")
    click.echo(f"api        {api_url}  (try {api_url}/model/status)")
    click.echo(f"readiness  {api_url}/readyz")
    click.echo(f"flower     http://{settings.flower_host}:{settings.flower_port}/")
    click.echo(f"api key    {api_key}")
    click.echo(f"logs       {home / 'logs'}")
    click.echo("ModelOps is up. Press Ctrl-C to stop.")
