"""Inserting prediction log rows at the rate the API answers them.

The ORM's insert spends most of a row's time on per-row parameter handling; the log
is the one table written at request rate, so its rows go straight to the driver:
pre-encoded values in INSERTs of 64 rows on SQLite, `COPY … FROM STDIN` on
PostgreSQL (measured by bench/log_throughput.py). Errors come back as SQLAlchemy's,
so the writer's retry and per-row fallback work as before.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from common.clock import as_utc

COLUMNS = (
    "prediction_id", "model", "model_version_id", "model_version", "features",
    "prediction", "confidence", "probabilities", "latency_ms", "status_code",
    "data_quality", "request_rows", "created_at", "arm", "shadow_of",
)  # fmt: skip
JSON_COLUMNS = {"features", "probabilities", "data_quality"}
# Columns often None on a whole batch's rows (without a default but NULL).
OPTIONAL_COLUMNS = (
    "model_version_id", "confidence", "probabilities", "data_quality", "shadow_of",
)  # fmt: skip
_OPTIONAL_INDEXES = tuple(COLUMNS.index(name) for name in OPTIONAL_COLUMNS)
# Rows go in groups of ROWS_PER_STATEMENT per INSERT: `executemany` binds and steps
# statement by statement, letting go of the GIL and taking it back around each step,
# which under load costs the threads answering requests a hand-over per statement.
ROWS_PER_STATEMENT = 64  # 960 parameters: within SQLite's oldest limit (999)
POSTGRES_COPY = f"COPY prediction_logs ({', '.join(COLUMNS)}) FROM STDIN"


@dataclass(frozen=True)
class PreparedLogRows:
    """Log rows as the driver takes them, made before the transaction: on SQLite
    the parameters of each INSERT, on PostgreSQL the rows for COPY."""

    dialect: str
    statements: list[tuple[str, list[tuple[Any, ...]]]]  # SQLite: (SQL, parameters)
    copy_rows: list[tuple[Any, ...]]  # PostgreSQL
    count: int


def prepare_log_rows(dialect: str, rows: list[dict[str, Any]]) -> PreparedLogRows:
    """Encode `rows` (dicts with COLUMNS) for `dialect`'s driver. A JSON column's
    value is a Python value, or its JSON text already encoded (a `str`: the API
    encodes a request's features once, where they are at hand, instead of
    pickling the dict to the log process and encoding it there; no JSON column
    holds a bare string as its value). No database call: the log
    writer does this before its transaction, which then holds the write lock only
    for the inserts."""
    if dialect == "postgresql":
        return PreparedLogRows(dialect, [], list(_postgres_tuples(rows)), len(rows))
    values = list(_sqlite_tuples(rows))
    statements: list[tuple[str, list[tuple[Any, ...]]]] = []
    for start in range(0, len(values), ROWS_PER_STATEMENT):
        group = values[start : start + ROWS_PER_STATEMENT]
        empty = _empty_columns(group)
        sql = _sqlite_insert(len(group), empty)
        parameters = _flat(group, empty)
        if statements and statements[-1][0] == sql:  # one executemany, rows in order
            statements[-1][1].append(parameters)
        else:
            statements.append((sql, [parameters]))
    return PreparedLogRows(dialect, statements, [], len(rows))


def insert_log_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` (dicts with COLUMNS, see `prepare_log_rows`) in the session's
    transaction."""
    if rows:
        dialect = session.get_bind().dialect.name
        insert_prepared_rows(session, prepare_log_rows(dialect, rows))


def insert_prepared_rows(session: Session, prepared: PreparedLogRows) -> None:
    """Insert what `prepare_log_rows` made, in the session's transaction."""
    if not prepared.count:
        return
    connection = session.connection()
    if prepared.dialect == "postgresql":
        _copy_postgres(connection, prepared.copy_rows)
        return
    for statement, parameters in prepared.statements:
        connection.exec_driver_sql(statement, parameters)


@functools.cache
def _sqlite_insert(rows: int, empty: frozenset[int]) -> str:
    """An INSERT of `rows` rows (at most ROWS_PER_STATEMENT) without the columns at
    the indexes `empty` (few distinct texts: the same columns are empty batch
    after batch)."""
    names = [name for index, name in enumerate(COLUMNS) if index not in empty]
    row = f"({', '.join('?' for _ in names)})"
    return (f"INSERT INTO prediction_logs ({', '.join(names)}) "
            f"VALUES {', '.join([row] * rows)}")  # fmt: skip


def _empty_columns(group: list[tuple[Any, ...]]) -> frozenset[int]:
    """The OPTIONAL_COLUMNS that are None in every row of `group`: left out of its
    INSERT (they default to NULL). A None bound as a parameter costs the sqlite3
    module a failed adaptation lookup, an AttributeError made and dropped: about
    2,000 instructions each; with three empty on every row, 9% of the log's whole
    write a row (callgrind). `data_quality` and `shadow_of` are empty on most."""
    columns = list(zip(*group, strict=True))
    return frozenset(
        index for index in _OPTIONAL_INDEXES if columns[index].count(None) == len(group)
    )


def _flat(group: list[tuple[Any, ...]], empty: frozenset[int]) -> tuple[Any, ...]:
    """One INSERT's parameters: the rows' values in order, but those of `empty`."""
    if empty:
        kept = _kept(empty)
        return tuple(itertools.chain.from_iterable(map(kept, group)))
    return tuple(itertools.chain.from_iterable(group))


@functools.cache
def _kept(empty: frozenset[int]) -> operator.itemgetter[Any]:
    return operator.itemgetter(*(i for i in range(len(COLUMNS)) if i not in empty))


def _json_text(value: Any) -> str:
    """A JSON column's text: `value` encoded, or as it came where it came encoded."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _sqlite_tuples(rows: list[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    created, text = None, ""  # a request's rows share one time (one object)
    for row in rows:
        if row["created_at"] is not created:
            created = row["created_at"]
            text = _sqlite_time(created)
        probabilities, quality = row.get("probabilities"), row.get("data_quality")
        yield (
            row["prediction_id"], row["model"], row.get("model_version_id"),
            row["model_version"], _json_text(row["features"]), row["prediction"],
            row.get("confidence"),
            None if probabilities is None else _json_text(probabilities),
            row["latency_ms"], row.get("status_code", 200),
            None if quality is None else _json_text(quality),
            row.get("request_rows", 1), text,
            row.get("arm") or "", row.get("shadow_of"),
        )  # fmt: skip


def _sqlite_time(value: datetime) -> str:
    """As SQLAlchemy stores a DateTime on SQLite (UTC, no zone): the UTC time's
    ISO text without its "+00:00" (half the time of dropping the zone first)."""
    return as_utc(value).isoformat(" ", "microseconds")[:-6]


def _postgres_tuples(rows: list[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    from psycopg.types.json import Jsonb

    for row in rows:
        yield tuple(
            _postgres_json(row.get(name), Jsonb)
            if name in JSON_COLUMNS
            else _DEFAULTS.get(name) if row.get(name) is None else row[name]
            for name in COLUMNS
        )  # fmt: skip


def _copy_postgres(connection: Any, rows: list[tuple[Any, ...]]) -> None:
    from psycopg import Error

    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(POSTGRES_COPY) as copy:
            for row in rows:
                copy.write_row(row)
    except Error as exc:  # as SQLAlchemy would raise it: IntegrityError and so on
        raise DBAPIError.instance(POSTGRES_COPY, None, exc, Error) from exc


def _postgres_json(value: Any, jsonb: Any) -> Any:
    """A JSON column's value for COPY: its text where it came encoded (COPY's text
    format hands it to jsonb's parser), else wrapped in psycopg's `jsonb` adapter."""
    if value is None or isinstance(value, str):
        return value
    return jsonb(value)


_DEFAULTS = {"status_code": 200, "request_rows": 1, "arm": ""}
