"""Benchmarks: each module runs with `python -m bench.NAME` (docs/performance.md)."""

import sys


def say(line: str) -> None:
    """One line of a benchmark's report, out at once (runs take minutes)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
