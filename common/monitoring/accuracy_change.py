"""Where a model's accuracy fell: one change point in its labelled answers.

A retrain that fixes a fallen accuracy must learn from the answers after the fall,
not the window before it (the old world) nor only the last few labels (noise). The
split that best separates a higher accuracy before from a lower one after is the
classic CUSUM estimate for a Bernoulli mean: the split maximising
`(before - after) * sqrt(n_before * n_after / n)`. It counts as a fall when that is
at least `MIN_Z` standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.clock import from_iso, to_iso
from common.storage.tables import FeedbackLabel, PredictionLog

MIN_Z = 4.0  # a fall this many standard errors deep is no accident of sampling


@dataclass(frozen=True)
class AccuracyDrop:
    since: str  # ISO time of the first answer after the fall
    before: float
    after: float
    labels_after: int
    z: float


def find_accuracy_drop(
    session: Session, model_version_id: int, since: str, min_side: int
) -> AccuracyDrop | None:
    """The fall in the version's accuracy among its answers since `since`, with at
    least `min_side` labelled answers on each side; None when there is none."""
    rows = session.execute(
        select(PredictionLog.created_at, PredictionLog.prediction, FeedbackLabel.label)
        .join(FeedbackLabel, FeedbackLabel.prediction_id == PredictionLog.prediction_id)
        .where(PredictionLog.model_version_id == model_version_id,
               PredictionLog.status_code == 200,
               PredictionLog.created_at >= from_iso(since))
        .order_by(PredictionLog.created_at, PredictionLog.id)
    ).all()  # fmt: skip
    correct = np.array([str(p) == str(t) for _, p, t in rows], dtype=float)
    split = change_point(correct, min_side)
    if split is None:
        return None
    index, z = split
    return AccuracyDrop(
        since=to_iso(rows[index].created_at) or since,
        before=float(correct[:index].mean()),
        after=float(correct[index:].mean()),
        labels_after=len(correct) - index,
        z=z,
    )


def change_point(correct: np.ndarray, min_side: int) -> tuple[int, float] | None:
    """The index of the first answer after the deepest fall (at least `min_side`
    answers on each side), and its depth in standard errors; None without a fall of
    at least MIN_Z."""
    n = len(correct)
    if n < 2 * min_side:
        return None
    share = correct.mean()
    spread = math.sqrt(share * (1 - share))
    if spread == 0:
        return None  # all right or all wrong: nothing fell
    cumulative = np.cumsum(correct)
    before_n = np.arange(min_side, n - min_side + 1)
    after_n = n - before_n
    before = cumulative[before_n - 1] / before_n
    after = (cumulative[-1] - cumulative[before_n - 1]) / after_n
    z = (before - after) * np.sqrt(before_n * after_n / n) / spread
    best = int(np.argmax(z))
    if z[best] < MIN_Z:
        return None
    return int(before_n[best]), float(z[best])
