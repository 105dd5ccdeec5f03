"""Writing logged predictions together with what they add to the rollups."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from common.monitoring.label_rollups import count_labels, count_shadow_labels
from common.monitoring.rollups import MinuteCounts, RollupKey, RollupWriter
from common.storage import repositories as repo


def write_predictions(
    session: Session, rows: list[dict[str, Any]], rollups: RollupWriter
) -> dict[RollupKey, MinuteCounts]:
    """Insert log rows, write their minutes' rollups and count the labels that came
    before them, in `session`'s transaction. Pass the result to `rollups.adopt`
    once it commits."""
    repo.insert_prediction_logs(session, rows)
    touched = rollups.prepare(session, rows)
    count_labels(session, [row["prediction_id"] for row in rows])
    count_shadow_labels(session, rows)
    return touched


def log_predictions(
    session: Session, rows: list[dict[str, Any]], rollups: RollupWriter | None = None
) -> None:
    """Write rows at once, as a writer of their own (scripts, tests, imports)."""
    rollups = rollups or RollupWriter()
    rollups.adopt(write_predictions(session, rows, rollups))
