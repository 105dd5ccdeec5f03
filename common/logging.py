"""Logging set-up, called once by each entrypoint."""

from __future__ import annotations

import logging

from common.config import Settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(settings: Settings) -> None:
    """Send records to stderr at the configured level."""
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT, force=True)
