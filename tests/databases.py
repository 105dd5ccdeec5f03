"""The databases the suites run on: SQLite always, PostgreSQL when the suite is given
one through `MODELOPS_TEST_DATABASE_URL` (`.ci/run` sets it when PostgreSQL answers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from common.config import Settings
from common.storage.db import make_engine, scratch_schema
from common.storage.migrate import upgrade_database

# Taken out of the environment: it is the suite's option, not a setting, and the
# settings loader rightly refuses unknown MODELOPS_* variables in the code under test.
# It goes on under a name the loader ignores, for pytest-xdist's workers, which start
# after this module ran in the controller.
POSTGRES_URL = os.environ.pop("MODELOPS_TEST_DATABASE_URL", "") or os.environ.get(
    "TEST_POSTGRES_URL", ""
)
if POSTGRES_URL:
    os.environ["TEST_POSTGRES_URL"] = POSTGRES_URL


# The integration suite runs once per backend here; without PostgreSQL it is not
# listed as skipped a hundred times, it simply runs on SQLite alone.
INTEGRATION_BACKENDS = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


@contextmanager
def empty_database(settings: Settings, backend: str) -> Iterator[Settings]:
    """`settings` pointed at an empty database of `backend`, for code that migrates
    it itself. SQLite lives in the settings' home; PostgreSQL gets a schema of its
    own, dropped on exit, so tests never see each other's rows."""
    if backend == "sqlite":
        yield settings
        return
    with scratch_schema(POSTGRES_URL, "t") as url:
        yield settings.with_overrides(database_url=url)


@contextmanager
def migrated_database(settings: Settings, backend: str) -> Iterator[Settings]:
    """`settings` pointed at a freshly migrated database of `backend`."""
    with empty_database(settings, backend) as empty:
        engine = make_engine(empty)
        try:
            upgrade_database(engine)
        finally:
            engine.dispose()
        yield empty
