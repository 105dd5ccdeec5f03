"""One engine per worker process, created after the fork (never shared across it)."""

from __future__ import annotations

import functools
import os

from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.storage.db import make_engine, make_session_factory


@functools.cache
def _factory_for(pid: int, settings: Settings) -> sessionmaker[Session]:
    return make_session_factory(make_engine(settings))


def session_factory(settings: Settings) -> sessionmaker[Session]:
    """Sessions for this process; a forked child gets its own engine."""
    return _factory_for(os.getpid(), settings)
