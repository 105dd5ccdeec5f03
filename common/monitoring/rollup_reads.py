"""Reading the per-minute rollups: the totals of a window, or of each bucket of one.

A read touches one row per writer, version and minute (and one per label pair), so
its cost follows the length of the window, never the traffic in it. Windows are
whole minutes: one starting mid-minute takes that whole minute.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from common.clock import as_utc
from common.monitoring.rollups import minute_of
from common.monitoring.sketches import SketchSum
from common.rollouts.arms import not_shadow
from common.storage.tables import LabelRollup, ModelVersion, PredictionRollup

_PREDICTION_COLUMNS = (
    PredictionRollup.minute, PredictionRollup.requests, PredictionRollup.errors,
    PredictionRollup.predictions, PredictionRollup.latency_sum,
    PredictionRollup.latency, PredictionRollup.predicted_values,
    PredictionRollup.classes, PredictionRollup.confidence_sum,
    PredictionRollup.confidence_count, PredictionRollup.quality,
    PredictionRollup.compared, PredictionRollup.agreed, PredictionRollup.difference_sum,
)  # fmt: skip
_LABEL_COLUMNS = (
    LabelRollup.minute, LabelRollup.predicted, LabelRollup.actual,
    LabelRollup.labelled, LabelRollup.abs_error_sum, LabelRollup.sq_error_sum,
    LabelRollup.label_sum, LabelRollup.label_sq_sum,
)  # fmt: skip


@dataclass
class Totals:
    """Everything a window's metrics are computed from."""

    requests: int = 0
    errors: int = 0
    predictions: int = 0
    latency_sum: float = 0.0
    latency: SketchSum = field(default_factory=SketchSum)
    values: SketchSum = field(default_factory=SketchSum)
    classes: Counter[str] = field(default_factory=Counter)
    confidence_sum: float = 0.0
    confidence_count: int = 0
    quality: Counter[str] = field(default_factory=Counter)
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (pred, true)
    labelled: int = 0
    abs_error_sum: float = 0.0
    sq_error_sum: float = 0.0
    label_sum: float = 0.0
    label_sq_sum: float = 0.0
    compared: int = 0  # a shadow's rows compared with the champion's answers
    agreed: int = 0
    difference_sum: float = 0.0

    def add_predictions(self, row: Any) -> None:
        self.requests += row.requests
        self.errors += row.errors
        self.predictions += row.predictions
        self.latency_sum += row.latency_sum
        self.latency.add(row.latency)
        self.values.add(row.predicted_values)
        self.classes.update(row.classes or {})
        self.confidence_sum += row.confidence_sum
        self.confidence_count += row.confidence_count
        self.quality.update(row.quality or {})
        self.compared += row.compared
        self.agreed += row.agreed
        self.difference_sum += row.difference_sum

    def add_labels(self, row: Any) -> None:
        self.labelled += row.labelled
        if row.predicted or row.actual:
            self.pairs[(row.predicted, row.actual)] += row.labelled
        self.abs_error_sum += row.abs_error_sum
        self.sq_error_sum += row.sq_error_sum
        self.label_sum += row.label_sum
        self.label_sq_sum += row.label_sq_sum

    def latency_percentiles(self) -> dict[str, float | None]:
        p50, p95, p99 = self.latency.quantiles(0.5, 0.95, 0.99)
        return {"p50": p50, "p95": p95, "p99": p99}

    def accuracy(self) -> float | None:
        if not self.labelled:
            return None
        correct = sum(n for (p, t), n in self.pairs.items() if p == t)
        return correct / self.labelled

    def regression_errors(self) -> dict[str, float | None]:
        n = self.labelled
        if not n:
            return {"mae": None, "rmse": None, "r2": None}
        spread = self.label_sq_sum - self.label_sum * self.label_sum / n
        r2 = 1 - self.sq_error_sum / spread if spread > 1e-12 * max(1.0, n) else None
        rmse = math.sqrt(max(self.sq_error_sum, 0.0) / n)
        return {"mae": self.abs_error_sum / n, "rmse": rmse, "r2": r2}

    def estimated_accuracy(self) -> float | None:
        if not self.confidence_count:
            return None
        return self.confidence_sum / self.confidence_count


def _filters(table: Any, model: str, since: datetime, until: datetime,
             version: int | None, arm: str | None = None) -> list[Any]:  # fmt: skip
    """Rows of `model`'s minutes in the window: of one version and one arm, or the
    answers of every version and arm (a shadow's rows are no answers)."""
    arms = table.arm == arm if arm is not None else not_shadow(table.arm)
    where = [table.model == model, table.minute >= minute_of(since),
             table.minute <= until, arms]  # fmt: skip
    if version is not None:
        where.append(table.model_version_id == version)
    else:  # not the versions a demo reset deleted (their numbers come back)
        versions = select(ModelVersion.id).where(ModelVersion.name == model)
        where.append(or_(table.model_version_id == 0,
                         table.model_version_id.in_(versions)))  # fmt: skip
    return where


def window_totals(
    session: Session, model: str, since: datetime, until: datetime,
    version: int | None = None, arm: str | None = None,
) -> Totals:  # fmt: skip
    """The totals of `model`'s minutes from `since` to `until` (of the version with
    row id `version`, of one rollout `arm`)."""
    return bucket_totals(session, model, since, until, None, version, arm)[0][1]


def bucket_totals(
    session: Session, model: str, since: datetime, until: datetime,
    bucket_minutes: int | None, version: int | None = None, arm: str | None = None,
) -> list[tuple[datetime, Totals]]:  # fmt: skip
    """Totals per bucket of `bucket_minutes` from `since` (every bucket, empty ones
    too), or one bucket for the whole window when `bucket_minutes` is None."""
    start = minute_of(since)
    width = bucket_minutes or max(1, math.ceil((until - start).total_seconds() / 60))
    count = max(1, math.ceil((until - start).total_seconds() / 60 / width))
    buckets = [(start + timedelta(minutes=i * width), Totals()) for i in range(count)]

    def bucket_of(minute: datetime) -> Totals:
        index = int((as_utc(minute) - start).total_seconds() // 60) // width
        return buckets[min(max(index, 0), count - 1)][1]

    for row in session.execute(
        select(*_PREDICTION_COLUMNS).where(
            *_filters(PredictionRollup, model, since, until, version, arm)
        )
    ):
        bucket_of(row.minute).add_predictions(row)
    for row in session.execute(
        select(*_LABEL_COLUMNS).where(
            *_filters(LabelRollup, model, since, until, version, arm)
        )
    ):
        bucket_of(row.minute).add_labels(row)
    return buckets


def recent_requests(
    session: Session, model: str, until: datetime, version: int | None = None
) -> float:
    """Requests of the last 60 seconds, estimated from the current minute and the
    share of the previous one those seconds still cover (a sliding window over
    per-minute counts, as rate limiters keep it)."""
    current = minute_of(until)
    previous = current - timedelta(minutes=1)
    counts = dict.fromkeys((current, previous), 0)
    query = select(PredictionRollup.minute, PredictionRollup.requests).where(
        *_filters(PredictionRollup, model, previous, until, version)
    )
    for minute, requests in session.execute(query):
        counts[minute_of(minute)] = counts.get(minute_of(minute), 0) + requests
    covered = 1 - (until - current).total_seconds() / 60
    return counts[current] + counts[previous] * max(covered, 0.0)
