"""The progress callback long work reports through (a job row, a progress bar)."""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[int, str], None]
"""Called with a percentage 0-100 and a short stage text."""


def ignore_progress(percent: int, stage: str) -> None:
    """Progress sink for callers that do not show progress."""
