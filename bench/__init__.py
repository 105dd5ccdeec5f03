"""Benchmarks: each module runs with `python -m bench.NAME` (docs/performance.md)."""

import atexit
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def say(line: str) -> None:
    """One line of a benchmark's report, out at once (runs take minutes)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def scratch_dir(prefix: str) -> Path:
    """A temporary directory, removed when the benchmark exits however it ends:
    homes of millions of log rows must not pile up in /tmp run after run."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    # A benchmark stopped with SIGTERM (kill, timeout) unwinds as on Ctrl-C: its
    # `finally` blocks stop the servers it started and atexit removes the home.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return path


def alternating(items: Sequence[T], repeat: int) -> list[T]:
    """`items` in order on even repeats, reversed on odd ones (A B B A): where the
    shared machine speeds up or slows down across a run, every variant gets the
    early and the late slots alike, instead of the last one always running last."""
    return list(items) if repeat % 2 == 0 else list(reversed(items))
