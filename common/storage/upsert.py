"""Insert-or-update in one statement, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.sql.dml import Insert


def upsert(
    session: Session,
    table: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    increment: bool = False,
) -> None:
    """Insert `rows`; where one with the same `keys` exists, set its other columns to
    the new values, or add the new values to them with `increment`.

    Written at every prediction log transaction (the rollups): the statement is
    built once per shape and run through the session's connection, not the ORM's
    bulk path (together 0.5 ms of a transaction's 1.8 ms fixed cost, profiled)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    columns = tuple(name for name in rows[0] if name not in keys)
    statement = _statement(dialect, table, columns, tuple(keys), increment)
    session.connection().execute(statement, list(rows))


@functools.lru_cache(maxsize=64)
def _statement(
    dialect: str,
    table: type[DeclarativeBase],
    columns: tuple[str, ...],
    keys: tuple[str, ...],
    increment: bool,
) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table)
    target = table.__table__.c
    values = {
        name: (target[name] + statement.excluded[name]) if increment
        else statement.excluded[name]
        for name in columns
    }  # fmt: skip
    return statement.on_conflict_do_update(index_elements=list(keys), set_=values)
