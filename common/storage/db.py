"""Engines and sessions. SQLite gets WAL, a busy timeout and foreign keys on every
connection, so several processes can write without "database is locked"."""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.errors import DependencyError

log = logging.getLogger(__name__)


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    """Create the engine for `settings.database_url`, with SQLite pragmas applied."""
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    busy_ms = settings.sqlite_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # first: the pragmas below may wait for a lock too, and until this one
        # runs they would wait only the driver's default 5 s
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        # takes effect on a new file only: pruning then hands freed pages back
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    _explain_lock_errors(engine, busy_ms / 1000)
    return engine


def _explain_lock_errors(engine: Engine, busy_seconds: float) -> None:
    """Log what a SQLite "database is locked" means: the driver says the same for a
    busy timeout that ran out (another writer held the lock that long) and for a
    write refused at once (this connection's open read could not become a write
    while another connection wrote), and the two have different fixes."""

    @event.listens_for(engine, "before_cursor_execute")
    def _started(connection: Any, *_args: Any) -> None:
        connection.info["statement_started"] = time.monotonic()

    @event.listens_for(engine, "handle_error")
    def _explain(context: Any) -> None:
        error = context.original_exception
        if not isinstance(error, sqlite3.OperationalError) or "locked" not in str(
            error
        ):
            return
        started = (context.connection.info.get("statement_started")
                   if context.connection is not None else None)  # fmt: skip
        waited = time.monotonic() - started if started is not None else float("nan")
        cause = (
            "the busy timeout ran out: another connection held the write lock"
            if waited >= busy_seconds * 0.9
            else "refused before the busy timeout: a read open on this connection "
            "could not become a write, or the lock was needed to open the database"
        )
        log.warning(
            "SQLite %s after %.2f s (%s) on: %.300s",
            getattr(error, "sqlite_errorname", "SQLITE_BUSY"), waited, cause,
            context.statement,
        )  # fmt: skip


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose rows stay readable after commit (they are returned to callers)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Commit on success, roll back on error, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def check_database(engine: Engine) -> None:
    """Run a trivial query.

    Raises
    ------
    DependencyError
        When the database cannot be reached.
    """
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise DependencyError("database unreachable", reason=str(exc.orig)) from exc


@contextmanager
def scratch_schema(database_url: str, prefix: str) -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a new schema of their own, dropped on
    exit: tests and benchmarks share one database without seeing each other."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(database_url).update_query_dict(
            {"options": f"-csearch_path={schema}"}
        )
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
