"""Count labels into the minute of the prediction they judge, however late they come.

A stored label is `pending` until the label rollups count it. Counting claims the
row (pending -> false, counted_label = label) in the transaction that adds its
increments, so two processes never count one label twice; a changed label takes
the old one's counts back. Labels are counted where they can be: by the feedback
call for predictions already logged, by the log writer for labels that came before
their row, and by beat's sweep for whatever both missed.

A label also judges the shadow rows that scored its request during a shadow rollout:
they are counted with it (under their arm, `shadow:<rollout id>`), or, when a shadow
row is written after its request's label was counted, by the writer of that row.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import CursorResult, Select, bindparam, select, update
from sqlalchemy.orm import Session

from common.monitoring.rollups import as_number, minute_of
from common.storage.tables import FeedbackLabel, LabelRollup, Model, PredictionLog
from common.storage.upsert import upsert

KEY_COLUMNS = ("model", "minute", "model_version_id", "arm", "predicted", "actual")
SWEEP_LIMIT = 5000
FEW_IDS = 20  # up to this many ids are asked for by name
SUMS = ("labelled", "abs_error_sum", "sq_error_sum", "label_sum", "label_sq_sum")


def count_labels(
    session: Session, prediction_ids: Sequence[str] | None = None,
    limit: int = SWEEP_LIMIT,
) -> int:  # fmt: skip
    """Count the pending labels of `prediction_ids` (or any, up to `limit`) whose
    prediction is logged. Returns how many were counted."""
    wanted = None if prediction_ids is None else set(prediction_ids)
    if wanted is None:
        query = _pending_logged(None).order_by(FeedbackLabel.id).limit(limit)
        found = session.execute(query).all()
    elif not wanted:
        return 0
    else:
        kind, parameters = _among(wanted)
        found = session.execute(_pending_logged(kind), parameters).all()
    deltas: dict[tuple[Any, ...], dict[str, float]] = defaultdict(
        lambda: dict.fromkeys(SUMS, 0.0)
    )
    counted = 0
    claimed_labels: dict[str, tuple[str | None, str, str]] = {}
    for row in found:
        if wanted is not None and row.prediction_id not in wanted:
            continue  # in the range asked for, not one of the ids
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
        claimed_labels[row.prediction_id] = (row.counted_label, row.label, task)
        if row.counted_label is not None:
            _add(deltas, row, row.counted_label, task, sign=-1)
        _add(deltas, row, row.label, task, sign=1)
    for shadow in _shadows_of(session, list(claimed_labels)):
        before, after, task = claimed_labels[shadow.shadow_of]
        if before is not None:
            _add(deltas, shadow, before, task, sign=-1)
        _add(deltas, shadow, after, task, sign=1)
    _write(session, deltas)
    return counted


@functools.cache
def _pending_logged(among: str | None) -> Select[*tuple[Any, ...]]:
    """The pending labels whose prediction is logged, with what counting them needs;
    `among` (see `_among`) narrows them to some predictions. Built once: the log
    writer asks at every transaction, and building the statement took 0.7 ms, four
    times as long as running it (timed)."""
    query = (
        select(FeedbackLabel.id, FeedbackLabel.label, FeedbackLabel.counted_label,
               FeedbackLabel.prediction_id, PredictionLog.model,
               PredictionLog.model_version_id, PredictionLog.prediction,
               PredictionLog.status_code, PredictionLog.created_at, PredictionLog.arm,
               Model.task)
        .join(PredictionLog, PredictionLog.prediction_id == FeedbackLabel.prediction_id)
        .join(Model, Model.name == PredictionLog.model, isouter=True)
        .where(FeedbackLabel.pending)
    )  # fmt: skip
    return query if among is None else _narrowed(query, among)


def count_shadow_labels(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Count, for shadow rows just logged, the labels their requests already had
    counted (the label came before the challenger's answer was written)."""
    by_request = {row["shadow_of"]: row for row in rows if row.get("shadow_of")}
    if not by_request:
        return
    kind, parameters = _among(by_request)
    labels = session.execute(_counted_labels(kind), parameters).all()
    deltas: dict[tuple[Any, ...], dict[str, float]] = defaultdict(
        lambda: dict.fromkeys(SUMS, 0.0)
    )
    for prediction_id, label, task in labels:
        row = by_request.get(prediction_id)
        if row is not None and label is not None and row.get("status_code", 200) == 200:
            _add(deltas, _Row(row), label, task or "classification", sign=1)
    _write(session, deltas)


@functools.cache
def _counted_labels(among: str) -> Select[*tuple[Any, ...]]:
    """The counted labels of some logged predictions (`_among`), built once."""
    query = (
        select(FeedbackLabel.prediction_id, FeedbackLabel.counted_label, Model.task)
        .join(PredictionLog, PredictionLog.prediction_id == FeedbackLabel.prediction_id)
        .join(Model, Model.name == PredictionLog.model, isouter=True)
        .where(FeedbackLabel.counted_label.is_not(None))
    )  # fmt: skip
    return _narrowed(query, among)


def _among(ids: Collection[str]) -> tuple[str, dict[str, Any]]:
    """How a query on labels is narrowed to at least `ids` (callers keep only the
    rows whose id is one of them): the kind of condition `_narrowed` adds, and its
    parameters. Many ids go as their range, two parameters: prediction ids are
    time-ordered, so a logged batch's ids are a narrow range of the index, while an
    IN of a thousand ids cost the log writer more Python than inserting the rows
    (profiled)."""
    if len(ids) <= FEW_IDS:
        return "ids", {"ids": list(ids)}
    return "range", {"low": min(ids), "high": max(ids)}


def _narrowed(query: Select[*tuple[Any, ...]], among: str) -> Select[*tuple[Any, ...]]:
    """`query` on labels of the predictions `_among` names by `among`, bound later."""
    column = FeedbackLabel.prediction_id
    if among == "ids":
        return query.where(column.in_(bindparam("ids", expanding=True)))
    return query.where(column.between(bindparam("low"), bindparam("high")))


class _Row:
    """A log row dict read as the query rows `_add` takes."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.model, self.created_at = row["model"], row["created_at"]
        self.model_version_id = row["model_version_id"]
        self.prediction, self.arm = row["prediction"], row.get("arm") or ""


def _shadows_of(session: Session, prediction_ids: list[str]) -> Sequence[Any]:
    if not prediction_ids:
        return []
    return session.execute(
        select(PredictionLog.shadow_of, PredictionLog.model,
               PredictionLog.model_version_id, PredictionLog.prediction,
               PredictionLog.created_at, PredictionLog.arm)
        .where(PredictionLog.shadow_of.in_(prediction_ids),
               PredictionLog.status_code == 200)
    ).all()  # fmt: skip


def _write(session: Session, deltas: dict[tuple[Any, ...], dict[str, float]]) -> None:
    upsert(
        session, LabelRollup,
        [{**dict(zip(KEY_COLUMNS, key, strict=True)), **sums,
          "labelled": int(sums["labelled"])}
         for key, sums in deltas.items() if any(sums.values())],
        keys=KEY_COLUMNS, increment=True,
    )  # fmt: skip


def _add(
    deltas: dict[tuple[Any, ...], dict[str, float]],
    row: Any,
    label: str,
    task: str,
    sign: int,
) -> None:
    minute = minute_of(row.created_at)
    arm = row.arm or ""
    if task == "regression":
        predicted, actual = as_number(row.prediction), as_number(label)
        if predicted is None or actual is None:
            return
        sums = deltas[(row.model, minute, row.model_version_id or 0, arm, "", "")]
        error = predicted - actual
        sums["abs_error_sum"] += sign * abs(error)
        sums["sq_error_sum"] += sign * error * error
        sums["label_sum"] += sign * actual
        sums["label_sq_sum"] += sign * actual * actual
    else:
        version = row.model_version_id or 0
        key = (row.model, minute, version, arm, str(row.prediction), label)
        sums = deltas[key]
    sums["labelled"] += sign
