"""Writing logged predictions together with what they add to the rollups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import uuid_utils
from sqlalchemy.orm import Session

from common.monitoring.label_rollups import count_labels, count_shadow_labels
from common.monitoring.rollups import Counted, MinuteCounts, RollupKey, RollupWriter
from common.storage import repositories as repo
from common.storage.log_insert import PreparedLogRows, prepare_log_rows


def new_prediction_id() -> str:
    """A time-ordered id (UUIDv7, 32 hex digits): new rows land at the end of the
    log's unique index instead of on a random page of it. With random ids (UUIDv4)
    each 1000-row write dirtied pages all over the index, and inserting cost 2 to 4
    times as much, growing with the table (measured here on SQLite at 100k to 300k
    rows); ordered ids cost the same at any size."""
    return uuid_utils.uuid7().hex


@dataclass(frozen=True)
class PreparedPredictions:
    """Log rows with everything their write needs that takes no write lock."""

    rows: list[dict[str, Any]]
    driver_rows: PreparedLogRows
    counted: Counted


def prepare_predictions(
    session: Session, rows: list[dict[str, Any]], rollups: RollupWriter
) -> PreparedPredictions:
    """Encode `rows` for the driver and count them into the rollups, reading only
    (a model's task the first time, a dropped minute's stored counts). Run it in a
    session of its own, ended before the write's transaction begins: on SQLite a
    transaction that reads and then writes is refused when another connection wrote
    in between. The log writer does, so that its transaction holds SQLite's one
    write lock for the writes alone (5.7 ms of a 1000-row batch's 9.3 ms, where it
    held it for all of them: docs/performance.md)."""
    dialect = session.get_bind().dialect.name
    return PreparedPredictions(
        rows, prepare_log_rows(dialect, rows), rollups.count(session, rows)
    )


def write_prepared(
    session: Session, prepared: PreparedPredictions, rollups: RollupWriter
) -> dict[RollupKey, MinuteCounts]:
    """Insert prepared rows, write their rollups and count the labels that came
    before them, in `session`'s transaction. Pass the result to `rollups.adopt`
    once it commits."""
    repo.insert_prepared_prediction_logs(session, prepared.driver_rows)
    rollups.write(session, prepared.counted)
    _count_early_labels(session, prepared.rows)
    return prepared.counted.touched


def write_predictions(
    session: Session, rows: list[dict[str, Any]], rollups: RollupWriter
) -> dict[RollupKey, MinuteCounts]:
    """Insert log rows, write their minutes' rollups and count the labels that came
    before them, all in `session`'s transaction (the insert first, so that it
    writes before it reads). Pass the result to `rollups.adopt` once it commits."""
    repo.insert_prediction_logs(session, rows)
    touched = rollups.prepare(session, rows)
    _count_early_labels(session, rows)
    return touched


def _count_early_labels(session: Session, rows: list[dict[str, Any]]) -> None:
    # Shadow rows first, for labels counted before this transaction: counting the
    # batch's own pending labels next also counts their shadows in this batch, so
    # the other order counted such a shadow row twice.
    count_shadow_labels(session, rows)
    # A shadow row's id is never returned to a client, so no label names it.
    count_labels(session, [r["prediction_id"] for r in rows if not r.get("shadow_of")])


def log_predictions(
    session: Session, rows: list[dict[str, Any]], rollups: RollupWriter | None = None
) -> None:
    """Write rows at once, as a writer of their own (scripts, tests, imports)."""
    rollups = rollups or RollupWriter()
    rollups.adopt(write_predictions(session, rows, rollups))
