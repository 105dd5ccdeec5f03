"""Insert-or-update in one statement, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session


def upsert(
    session: Session,
    table: type[DeclarativeBase],
    rows: Sequence[dict[str, Any]],
    *,
    keys: Sequence[str],
    increment: bool = False,
) -> None:
    """Insert `rows`; where one with the same `keys` exists, set its other columns to
    the new values, or add the new values to them with `increment`."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table)
    columns = [name for name in rows[0] if name not in keys]
    target = table.__table__.c
    values = {
        name: (target[name] + statement.excluded[name]) if increment
        else statement.excluded[name]
        for name in columns
    }  # fmt: skip
    session.execute(
        statement.on_conflict_do_update(index_elements=list(keys), set_=values), rows
    )
