"""Helper processes of an API process (the shadow scorer, the prediction log)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any


def start_child(
    target: Callable[..., None], args: tuple[Any, ...], name: str
) -> tuple[BaseProcess, Connection]:
    """Start `target(conn, *args)` in a process of its own; its pipe's other end.

    Spawned, not forked: an API process has threads (a forked copy could inherit a
    held lock) and open database connections a child must not share. Daemonic: if
    the API process ends without stopping it, multiprocessing terminates it.
    """
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(
        target=target, args=(theirs, *args), name=name, daemon=True
    )
    process.start()
    theirs.close()
    return process, ours


def lower_priority(niceness: int) -> None:
    """Schedule this helper process as background work: on busy cores the API
    process's requests come first.

    It becomes a batch process (Linux's SCHED_BATCH: its fair share of the cores,
    but waking up never preempts a running request thread), at `niceness` or at the
    one it inherited where that is already lower priority (raising priority back
    needs privileges). Niceness 0 keeps its full share: what a process that holds
    SQLite's one write lock needs (Settings.writer_niceness).
    """
    if hasattr(os, "sched_setscheduler"):  # Linux
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    inherited = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, max(inherited, niceness))
