"""Schema migrations with Alembic: `modelops db upgrade` and `modelops up` call this."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.storage.db import make_engine, make_session_factory

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_database(engine: Engine, revision: str = "head") -> None:
    """Apply every migration up to `revision` (idempotent)."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    log.info("database at revision %s", current_revision(engine))


def downgrade_database(engine: Engine, revision: str) -> None:
    """Revert migrations down to `revision` ("base" empties the schema)."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at, or None when never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """Return the newest revision the code ships."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def make_revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the ORM tables (developers only)."""
    upgrade_database(engine)  # compare against the newest schema
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)


@contextmanager
def migrated_sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on a database brought up to the newest revision (CLI commands); its
    connections are closed on exit rather than left to the garbage collector."""
    engine = make_engine(settings)
    try:
        upgrade_database(engine)
        yield make_session_factory(engine)
    finally:
        engine.dispose()
