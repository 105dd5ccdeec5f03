"""Per-minute rollups of answered predictions, written beside the prediction log.

Each process writing the log (a *writer*: the log process of an API process, or
its shadow process) counts the rows it logs into one state per model,
version, minute and arm, and writes the touched states with absolute values in the
same transaction as the log rows. A writer owns its rows, so a retried write is
harmless and no two processes update one row; readers add the writers up
(common/monitoring/rollup_reads.py). Labels are counted separately, by increments
(common/monitoring/label_rollups.py), since any process may receive one.
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ddsketch import DDSketch
from sqlalchemy import select
from sqlalchemy.orm import Session

from common.clock import as_utc
from common.monitoring import sketches
from common.storage.tables import Model, PredictionRollup
from common.storage.upsert import upsert

RollupKey = tuple[str, datetime, int, str]  # model, minute, version, arm
KEY_COLUMNS = ("model", "minute", "model_version_id", "arm", "writer")
KEEP_MINUTES = 10  # states kept in memory after the newest minute seen
ONE_MINUTE = timedelta(minutes=1)
NEVER = datetime.min.replace(tzinfo=UTC)


def minute_of(at: datetime) -> datetime:
    return as_utc(at).replace(second=0, microsecond=0)


def new_writer_name() -> str:
    """Unique per process start: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:50]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class MinuteCounts:
    """One writer's counts of one minute of one model version."""

    requests: int = 0
    errors: int = 0
    predictions: int = 0
    latency_sum: float = 0.0
    latency: DDSketch = field(default_factory=sketches.new_sketch)
    values: DDSketch | None = None  # a regressor's predicted values
    classes: Counter[str] = field(default_factory=Counter)
    confidence_sum: float = 0.0
    confidence_count: int = 0
    quality: Counter[str] = field(default_factory=Counter)
    # Shadow rows: how many were compared with the champion's answer to the same
    # row, how many agreed (a class), and the absolute differences (a value).
    compared: int = 0
    agreed: int = 0
    difference_sum: float = 0.0

    def add_rows(self, rows: list[dict[str, Any]], task: str) -> None:
        """Count log rows as compute_window_metrics did: requests (and their
        latency) once per request, predictions per answered row. Counted a column
        at a time, not a row at a time: the log writer counts every row it writes,
        and row by row this cost a fifth of its write (measured)."""
        opened = [row for row in rows if row.get("request_rows", 1) > 0]
        if opened:
            self.requests += len(opened)
            self.errors += sum(row["status_code"] != 200 for row in opened)
            latencies = [float(row["latency_ms"]) for row in opened]
            sketches.add_values(self.latency, [max(x, 0.0) for x in latencies])
            total = self.latency_sum
            for latency in latencies:  # in order: the sum a row at a time gave
                total += latency
            self.latency_sum = total
        answered = [row for row in rows if row["status_code"] == 200]
        if not answered:
            return
        self.predictions += len(answered)
        if task == "regression":
            numbers = map(as_number, [row["prediction"] for row in answered])
            present = [value for value in numbers if value is not None]
            if present:
                self.values = self.values or sketches.new_sketch()
                sketches.add_values(self.values, present)
        else:
            self.classes.update([str(row["prediction"]) for row in answered])
        for row in answered:
            confidence = row.get("confidence")
            if confidence is not None:
                self.confidence_sum += float(confidence)
                self.confidence_count += 1
            flags = row.get("data_quality")
            if flags:
                self.quality.update([flag.split(":", 1)[0] for flag in flags])
            if "champion_prediction" in row:  # a shadow row (never stored in the log)
                self._compare(row["prediction"], row["champion_prediction"], task)

    def _compare(self, mine: Any, champion: Any, task: str) -> None:
        if task == "regression":
            a, b = as_number(mine), as_number(champion)
            if a is None or b is None:
                return
            self.difference_sum += abs(a - b)
        else:
            self.agreed += str(mine) == str(champion)
        self.compared += 1

    def copy(self) -> MinuteCounts:
        """An independent copy to count into (the writer's copy-then-adopt). The
        sketches are merged into new ones, which copies their bins exactly; a
        deepcopy cost a fifth of a log transaction's fixed time (profiled)."""
        return dataclasses.replace(
            self,
            latency=_copied(self.latency),
            values=_copied(self.values) if self.values is not None else None,
            classes=Counter(self.classes),
            quality=Counter(self.quality),
        )

    def columns(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "predictions": self.predictions,
            "latency_sum": self.latency_sum,
            "latency": sketches.encode(self.latency),
            "predicted_values": sketches.encode(self.values) if self.values else None,
            "classes": dict(self.classes) or None,
            "confidence_sum": self.confidence_sum,
            "confidence_count": self.confidence_count,
            "quality": dict(self.quality) or None,
            "compared": self.compared,
            "agreed": self.agreed,
            "difference_sum": self.difference_sum,
        }

    @classmethod
    def from_row(cls, row: PredictionRollup) -> MinuteCounts:
        return cls(
            requests=row.requests, errors=row.errors, predictions=row.predictions,
            latency_sum=row.latency_sum,
            latency=sketches.to_sketch(row.latency),
            values=(sketches.to_sketch(row.predicted_values)
                    if row.predicted_values else None),
            classes=Counter(row.classes or {}),
            confidence_sum=row.confidence_sum,
            confidence_count=row.confidence_count,
            quality=Counter(row.quality or {}),
            compared=row.compared, agreed=row.agreed,
            difference_sum=row.difference_sum,
        )  # fmt: skip


def _copied(sketch: DDSketch) -> DDSketch:
    fresh = sketches.new_sketch()
    fresh.merge(sketch)
    return fresh


def as_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class Counted:
    """What `RollupWriter.count` made of some rows: the touched states (for
    `adopt` once written) and their rows for the upsert."""

    touched: dict[RollupKey, MinuteCounts]
    values: list[dict[str, Any]]


class RollupWriter:
    """One process's rollup states. Not thread-safe: the log writer's thread owns it.

    `prepare` counts rows into copies of the states they touch and writes those
    (or, apart, `count` before a transaction and `write` in it); `adopt` keeps
    the copies once the transaction committed, so rows that go back to the spool
    after a failed write are never counted twice.
    """

    def __init__(self, writer: str | None = None) -> None:
        self.writer = writer or new_writer_name()
        self._states: dict[RollupKey, MinuteCounts] = {}
        self._tasks: dict[str, str] = {}
        self._dropped_before: datetime | None = None  # older states may be stored

    def prepare(
        self, session: Session, rows: Iterable[dict[str, Any]]
    ) -> dict[RollupKey, MinuteCounts]:
        """Count `rows` into copies of their states and write them in `session`."""
        counted = self.count(session, rows)
        self.write(session, counted)
        return counted.touched

    def count(self, session: Session, rows: Iterable[dict[str, Any]]) -> Counted:
        """Count `rows` into copies of the states they touch, and encode those for
        the upsert; writes nothing. Reads only what it does not hold: a model's task
        the first time, a minute's stored counts after its state was dropped."""
        rows = list(rows)
        tasks = self._tasks_of(session, {row["model"] for row in rows})
        groups: dict[RollupKey, list[dict[str, Any]]] = {}
        minute = end = NEVER
        for row in rows:
            at = as_utc(row["created_at"])
            # Rows come in time order, mostly many to a minute: the last row's
            # minute is compared, not computed again (it cost as much as counting).
            if not minute <= at < end:
                minute = minute_of(at)
                end = minute + ONE_MINUTE
            version = int(row.get("model_version_id") or 0)
            key = (row["model"], minute, version, row.get("arm") or "")
            group = groups.get(key)
            if group is None:
                groups[key] = [row]
            else:
                group.append(row)
        touched: dict[RollupKey, MinuteCounts] = {}
        for key, group in groups.items():
            state = touched[key] = self._copy_of(session, key)
            state.add_rows(group, tasks[key[0]])
        values = [{"model": k[0], "minute": k[1], "model_version_id": k[2],
                   "arm": k[3], "writer": self.writer, **state.columns()}
                  for k, state in touched.items()]  # fmt: skip
        return Counted(touched, values)

    def write(self, session: Session, counted: Counted) -> None:
        """Write the states `count` made (absolute values: a retry is harmless)."""
        upsert(session, PredictionRollup, counted.values, keys=KEY_COLUMNS)

    def adopt(self, touched: dict[RollupKey, MinuteCounts]) -> None:
        """Keep what a committed `prepare` wrote; drop states of minutes long past."""
        self._states.update(touched)
        newest = max(key[1] for key in self._states) if self._states else None
        if newest is None:
            return
        horizon = newest - timedelta(minutes=KEEP_MINUTES)
        old = [key for key in self._states if key[1] < horizon]
        for key in old:
            del self._states[key]
        if old:
            self._dropped_before = max(self._dropped_before or horizon, horizon)

    def _copy_of(self, session: Session, key: RollupKey) -> MinuteCounts:
        state = self._states.get(key)
        if state is not None:
            return state.copy()
        if self._dropped_before is not None and key[1] < self._dropped_before:
            stored = session.scalar(
                select(PredictionRollup).where(
                    PredictionRollup.model == key[0],
                    PredictionRollup.minute == key[1],
                    PredictionRollup.model_version_id == key[2],
                    PredictionRollup.arm == key[3],
                    PredictionRollup.writer == self.writer,
                )
            )
            if stored is not None:
                return MinuteCounts.from_row(stored)
        return MinuteCounts()

    def _tasks_of(self, session: Session, models: set[str]) -> dict[str, str]:
        """Each model's task: read once per model (it never changes); a name with
        no model row yet (a refused request) counts as classification."""
        missing = models - self._tasks.keys()
        if missing:
            found = session.execute(
                select(Model.name, Model.task).where(Model.name.in_(missing))
            )
            self._tasks.update({name: task for name, task in found})
        return {name: self._tasks.get(name, "classification") for name in models}
