"""Count labels into the minute of the prediction they judge, however late they come.

A stored label is `pending` until the label rollups count it. Counting claims the
row (pending -> false, counted_label = label) in the transaction that adds its
increments, so two processes never count one label twice; a changed label takes
the old one's counts back. Labels are counted where they can be: by the feedback
call for predictions already logged, by the log writer for labels that came before
their row, and by beat's sweep for whatever both missed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from common.monitoring.rollups import as_number, minute_of
from common.storage.tables import FeedbackLabel, LabelRollup, Model, PredictionLog
from common.storage.upsert import upsert

KEY_COLUMNS = ("model", "minute", "model_version_id", "arm", "predicted", "actual")
SWEEP_LIMIT = 5000
SUMS = ("labelled", "abs_error_sum", "sq_error_sum", "label_sum", "label_sq_sum")


def count_labels(
    session: Session, prediction_ids: Sequence[str] | None = None,
    limit: int = SWEEP_LIMIT,
) -> int:  # fmt: skip
    """Count the pending labels of `prediction_ids` (or any, up to `limit`) whose
    prediction is logged. Returns how many were counted."""
    query = (
        select(FeedbackLabel.id, FeedbackLabel.label, FeedbackLabel.counted_label,
               PredictionLog.model, PredictionLog.model_version_id,
               PredictionLog.prediction, PredictionLog.status_code,
               PredictionLog.created_at, Model.task)
        .join(PredictionLog, PredictionLog.prediction_id == FeedbackLabel.prediction_id)
        .join(Model, Model.name == PredictionLog.model, isouter=True)
        .where(FeedbackLabel.pending)
    )  # fmt: skip
    if prediction_ids is not None:
        if not prediction_ids:
            return 0
        query = query.where(FeedbackLabel.prediction_id.in_(prediction_ids))
    else:
        query = query.order_by(FeedbackLabel.id).limit(limit)
    deltas: dict[tuple[Any, ...], dict[str, float]] = defaultdict(
        lambda: dict.fromkeys(SUMS, 0.0)
    )
    counted = 0
    for row in session.execute(query).all():
        claimed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(FeedbackLabel)
            .where(FeedbackLabel.id == row.id, FeedbackLabel.pending,
                   FeedbackLabel.label == row.label)
            .values(pending=False, counted_label=row.label)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        if claimed.rowcount != 1 or row.status_code != 200:
            continue  # another process counted it, or it judges a failed request
        counted += 1
        task = row.task or "classification"
        if row.counted_label is not None:
            _add(deltas, row, row.counted_label, task, sign=-1)
        _add(deltas, row, row.label, task, sign=1)
    upsert(
        session, LabelRollup,
        [{**dict(zip(KEY_COLUMNS, key, strict=True)), **sums,
          "labelled": int(sums["labelled"])}
         for key, sums in deltas.items() if any(sums.values())],
        keys=KEY_COLUMNS, increment=True,
    )  # fmt: skip
    return counted


def _add(
    deltas: dict[tuple[Any, ...], dict[str, float]],
    row: Any,
    label: str,
    task: str,
    sign: int,
) -> None:
    minute = minute_of(row.created_at)
    if task == "regression":
        predicted, actual = as_number(row.prediction), as_number(label)
        if predicted is None or actual is None:
            return
        sums = deltas[(row.model, minute, row.model_version_id or 0, "", "", "")]
        error = predicted - actual
        sums["abs_error_sum"] += sign * abs(error)
        sums["sq_error_sum"] += sign * error * error
        sums["label_sum"] += sign * actual
        sums["label_sq_sum"] += sign * actual * actual
    else:
        version = row.model_version_id or 0
        key = (row.model, minute, version, "", str(row.prediction), label)
        sums = deltas[key]
    sums["labelled"] += sign
