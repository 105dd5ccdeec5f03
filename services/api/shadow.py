"""Shadow scoring off the request path: a challenger scores what the champion already
answered, and its answers are logged beside the champion's, never returned.

Requests wait in a bounded queue for one thread, which sleeps `GATHER_SECONDS` after
the first arrives, then scores what has gathered in calls of up to
`MAX_ROWS_PER_CALL` rows per challenger (a forest costs about the
same for one row or a few hundred), so shadowing all traffic costs the champion
little. When the queue is full the shadow
rows are dropped and counted; the champion's answer is never delayed.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from common.clock import utcnow
from common.config import Settings
from common.models.prediction import Prediction, predictions_from
from common.models.validation import validate_instances
from common.monitoring.prediction_log import new_prediction_id
from common.rollouts.arms import logged_arm
from services.api.model_cache import LoadedModel
from services.api.prediction_log import PredictionLogWriter
from services.api.prometheus import SHADOW_DROPPED, SHADOW_SCORED

log = logging.getLogger(__name__)

MAX_ROWS_PER_CALL = 512  # one predict call's rows: enough to amortise, not to stall
# A shadow's answer is not awaited by anyone: gather a fifth of a second of traffic
# per call, so a busy model pays its per-call cost (a forest's is milliseconds, for
# one row or hundreds) a few times a second instead of once per request.
GATHER_SECONDS = 0.2


@dataclass(slots=True)  # not frozen: one per shadowed request, and a frozen
class ShadowRequest:  # dataclass's __init__ costs twice as much
    """One answered request for the challenger to score too."""

    challenger: LoadedModel
    rollout_id: int
    instances: list[Any]
    champion: list[Prediction]  # what the champion answered, row by row
    prediction_ids: list[str]  # the champion's rows these shadow
    # The rows as the champion's validation built them, when the challenger has the
    # same input schema (they are then valid for it too): not validated twice.
    rows: list[list[Any]] | None = None


class ShadowScorer:
    """A bounded queue and the thread that empties it."""

    def __init__(
        self, settings: Settings, log_writer: PredictionLogWriter | None
    ) -> None:
        self.log_writer = log_writer
        self._queue: queue.Queue[ShadowRequest] = queue.Queue(
            maxsize=settings.rollout_shadow_queue
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, request: ShadowRequest) -> None:
        """Queue `request`, or drop it (counted) when the queue is full."""
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            rows = len(request.instances)
            SHADOW_DROPPED.labels(model=request.challenger.name).inc(rows)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="shadow-scorer", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued request is scored (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            # Let a fifth of a second of traffic gather, asleep: one wake-up per
            # gathering, not one per request (each wake-up takes the GIL from the
            # threads answering requests).
            self._stop.wait(GATHER_SECONDS)
            waiting = [first]
            most = self._queue.maxsize or MAX_ROWS_PER_CALL  # a queue's worth at most
            with contextlib.suppress(queue.Empty):
                while len(waiting) < most:
                    waiting.append(self._queue.get_nowait())
            for batch in _calls(waiting):
                try:
                    self._score(batch)
                except Exception:  # a challenger may fail any way: never the champion
                    log.exception("shadow scoring failed")
                finally:
                    for _ in batch:
                        self._queue.task_done()

    def _score(self, batch: list[ShadowRequest]) -> None:
        by_challenger: dict[int, list[ShadowRequest]] = collections.defaultdict(list)
        for request in batch:
            by_challenger[id(request.challenger)].append(request)
        for requests in by_challenger.values():
            self._score_one(requests[0].challenger, requests)

    def _score_one(self, model: LoadedModel, requests: list[ShadowRequest]) -> None:
        started = time.perf_counter()
        checked = [
            _Checked(r.rows, [])
            if r.rows is not None
            else validate_instances(
                model.input_schema, r.instances, _paths(r.instances)
            )
            for r in requests
        ]
        good = [c.rows for c in checked if not c.problems]
        flat = [row for rows in good for row in rows]
        failed: str | None = None
        answers: list[Prediction] = []
        if flat:
            try:
                answers = predictions_from(
                    model.scorer.score_rows(model.input_schema, flat)
                )
            except Exception as exc:  # counted as the challenger's errors
                failed = f"{type(exc).__name__}: {exc}"
        latency_ms = (time.perf_counter() - started) * 1000
        now, rows, cursor = utcnow(), [], 0
        for request, check in zip(requests, checked, strict=True):
            ok = not check.problems and failed is None
            mine = answers[cursor : cursor + len(request.instances)] if ok else []
            if not check.problems:
                cursor += len(request.instances)
            rows.extend(_rows(model, request, mine, ok, latency_ms, now))
        if failed:
            log.warning("challenger %s v%d failed in shadow: %s", model.name,
                        model.version, failed)  # fmt: skip
        SHADOW_SCORED.labels(model=model.name).inc(len(flat))
        if self.log_writer is not None:
            self.log_writer.add(rows)


@dataclass(slots=True)
class _Checked:
    """Rows already validated for the champion's schema, which is the challenger's."""

    rows: list[list[Any]]
    problems: list[Any]


def _calls(requests: list[ShadowRequest]) -> Iterator[list[ShadowRequest]]:
    """`requests` in order, in calls of about `MAX_ROWS_PER_CALL` rows."""
    batch: list[ShadowRequest] = []
    rows = 0
    for request in requests:
        batch.append(request)
        rows += len(request.instances)
        if rows >= MAX_ROWS_PER_CALL:
            yield batch
            batch, rows = [], 0
    if batch:
        yield batch


def _paths(instances: list[Any]) -> list[str]:
    return [f"instances[{i}]" for i in range(len(instances))]


def _rows(
    model: LoadedModel,
    request: ShadowRequest,
    answers: list[Prediction],
    ok: bool,
    latency_ms: float,
    now: Any,
) -> list[dict[str, Any]]:
    """The shadow's log rows: one per row answered, or one error row per request."""
    base = {"model": model.name, "model_version_id": model.model_version_id,
            "model_version": model.version, "latency_ms": latency_ms,
            "arm": logged_arm("shadow", request.rollout_id),
            "created_at": now}  # fmt: skip
    if not ok:
        return [{**base, "prediction_id": new_prediction_id(), "features": {},
                 "prediction": "", "confidence": None, "probabilities": None,
                 "status_code": 500, "data_quality": None, "request_rows": 1,
                 "shadow_of": request.prediction_ids[0]}]  # fmt: skip
    return [
        {**base, "prediction_id": new_prediction_id(), "features": {},
         "prediction": str(mine.prediction), "confidence": mine.confidence,
         "probabilities": mine.probabilities, "status_code": 200,
         "data_quality": None, "request_rows": len(request.instances) if i == 0 else 0,
         "shadow_of": champion_id,
         "champion_prediction": str(theirs.prediction)}
        for i, (mine, theirs, champion_id) in enumerate(zip(
            answers, request.champion, request.prediction_ids, strict=True))
    ]  # fmt: skip
