"""Terminal output shared by CLI commands: progress bars and version summaries."""

from __future__ import annotations

from typing import Any

import click


class ProgressBar:
    """A click progress bar fed by a `ProgressCallback`."""

    def __init__(self, label: str) -> None:
        self.bar = click.progressbar(length=100, label=label, show_eta=False, width=30)
        self.done = 0

    def __call__(self, percent: int, stage: str) -> None:
        self.bar.label = f"{stage:<24}"
        self.bar.update(max(percent - self.done, 0))
        self.done = max(self.done, percent)

    def __enter__(self) -> ProgressBar:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)


def echo_version(version: int, metrics: dict[str, Any], promoted: bool) -> None:
    """Print a new version's number and holdout metrics."""
    click.echo(f"registered version {version}{' (champion)' if promoted else ''}")
    for key in ("accuracy", "precision", "recall", "f1_score"):
        click.echo(f"  {key:<10} {metrics[key]:.4f}")
    click.echo(f"  holdout    {metrics['support']} rows")
