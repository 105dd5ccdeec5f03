"""What `modelops up` knows of its child processes, kept in `<home>/processes.json`.

The supervisor writes it on every change (atomically); the API reads it for `/readyz`
and Prometheus, so restarts are visible without asking the supervisor anything. A
file whose supervisor has gone is stale and reads as absent; so does a missing one
(compose runs every role as its own container, with nothing to report here).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FILE_NAME = "processes.json"


@dataclass
class ProcessState:
    """One supervised child: its current pid and what happened to it so far."""

    name: str
    essential: bool
    state: str = "starting"  # running, restarting, given_up, stopped
    pid: int | None = None
    started_at: str | None = None
    exits: int = 0
    restarts: int = 0
    last_exit_code: int | None = None
    last_exit_at: str | None = None
    next_restart_at: str | None = None
    message: str | None = None


@dataclass
class SupervisorState:
    pid: int
    started_at: str
    processes: dict[str, ProcessState] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def state_path(home: str | Path) -> Path:
    return Path(home) / FILE_NAME


def write_state(home: str | Path, state: SupervisorState) -> None:
    """Replace the file in one step: a reader never sees half of it."""
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(json.dumps(state.to_dict(), indent=1), encoding="utf-8")
    partial.replace(path)


def read_state(home: str | Path) -> dict[str, Any] | None:
    """The supervisor's last word, or None without a live supervisor."""
    try:
        data: dict[str, Any] = json.loads(state_path(home).read_text("utf-8"))
        os.kill(int(data["pid"]), 0)  # stale when its supervisor is gone
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data
