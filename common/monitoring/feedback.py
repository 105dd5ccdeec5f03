"""True labels for answered predictions; the source of live accuracy."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.clock import utcnow
from common.errors import ConflictError, InvalidInputError
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
    session: Session, items: list[tuple[str, Any]], default_classes: list[Any]
) -> list[FeedbackOutcome]:
    """Store one label per prediction id; repeating a call changes nothing.

    A label is checked against the classes of the model that answered the prediction,
    or `default_classes` (the champion's) when its log row has not landed yet; it is
    kept either way and joins the log row when that is written.

    Raises
    ------
    InvalidInputError
        Listing every label that is not a class of its model.
    """
    items = list(dict(items).items())  # a later label for the same id wins
    ids = [prediction_id for prediction_id, _ in items]
    classes_by_id = repo.find_prediction_classes(session, ids)
    problems = []
    for index, (prediction_id, label) in enumerate(items):
        allowed = [str(c) for c in classes_by_id.get(prediction_id, default_classes)]
        if str(label) not in allowed:
            problems.append(
                {
                    "field": f"[{index}].label",
                    "code": "unknown_class",
                    "message": f"label {label!r} is not one of the classes {allowed}",
                }
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
            row.label, row.updated_at = text, utcnow()
            status = "updated"
        outcomes.append(
            FeedbackOutcome(
                prediction_id, label, status, prediction_id in classes_by_id
            )
        )
    try:
        session.flush()
    except IntegrityError as exc:  # the same id inserted concurrently by another call
        raise ConflictError(
            "concurrent feedback for the same prediction; retry"
        ) from exc
    return outcomes
