"""True labels for answered predictions; the source of live accuracy."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.clock import utcnow
from common.errors import ConflictError, InvalidInputError
from common.monitoring.label_rollups import count_labels
from common.storage import repositories as repo
from common.storage.tables import FeedbackLabel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedbackOutcome:
    prediction_id: str
    label: Any  # as the caller sent it: a number stays a number
    status: str  # "recorded", "updated", "unchanged"
    joined: bool  # the prediction's log row is already stored

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def record_feedback(
    session: Session, items: list[tuple[str, Any]]
) -> list[FeedbackOutcome]:
    """Store one label per prediction id; repeating a call changes nothing.

    A label is checked against the model that answered the prediction: one of a
    classifier's classes, a finite number for a regressor. A label for a prediction
    whose log row has not landed yet (the log is written in batches, by whichever
    API process answered) cannot be checked: it is kept, `joined` is false, and it
    joins the row when that lands.

    Raises
    ------
    InvalidInputError
        Listing every label its model cannot have.
    """
    items = list(dict(items).items())  # a later label for the same id wins
    ids = [prediction_id for prediction_id, _ in items]
    targets = repo.find_prediction_targets(session, ids)
    problems = []
    for index, (prediction_id, label) in enumerate(items):
        target = targets.get(prediction_id)
        problem = _label_problem(label, *target) if target else None
        if problem:
            problems.append(
                {"field": f"[{index}].label", "code": problem[0], "message": problem[1]}
            )
    if problems:
        raise InvalidInputError("feedback refused: unknown labels", problems=problems)
    existing = repo.find_feedback(session, ids)
    outcomes = []
    for prediction_id, label in items:
        text = str(label)
        row = existing.get(prediction_id)
        if row is None:
            session.add(FeedbackLabel(prediction_id=prediction_id, label=text))
            status = "recorded"
        elif row.label == text:
            status = "unchanged"
        else:
            row.label, row.updated_at, row.pending = text, utcnow(), True
            status = "updated"
        outcomes.append(
            FeedbackOutcome(prediction_id, label, status, prediction_id in targets)
        )
    try:
        session.flush()
    except IntegrityError as exc:  # the same id inserted concurrently by another call
        raise ConflictError(
            "concurrent feedback for the same prediction; retry"
        ) from exc
    count_labels(
        session, [o.prediction_id for o in outcomes if o.status != "unchanged"]
    )
    return outcomes


def _label_problem(label: Any, task: str, classes: list[Any]) -> tuple[str, str] | None:
    if task == "regression":
        if isinstance(label, bool) or not _finite(label):
            return "not_a_number", f"label {label!r} of a regressor must be a number"
        return None
    allowed = [str(c) for c in classes]
    if str(label) not in allowed:
        return "unknown_class", f"label {label!r} is not one of the classes {allowed}"
    return None


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
