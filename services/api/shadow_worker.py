"""The shadow's own process: one per API process, started by its first shadowed
request (services/api/shadow.py). It loads each challenger it is sent (verified, as
the API loads one), scores the requests the champion already answered, and writes
the challenger's log rows, linked to the champion's.

Why a process: scoring and logging in a thread of the API process took the GIL from
the threads answering requests (a 100% shadow cost the champion about a sixth of its
throughput at concurrency 32). Here that work holds no lock the champion needs, and
it runs as background work (a batch process; on PostgreSQL also at the lower CPU
priority of `MODELOPS_ROLLOUT_SHADOW_NICE`, not on SQLite, whose one write lock it
takes to write): on a saturated machine the champion's requests get the cores first,
the shadow takes what they leave, and what it cannot take is dropped and counted by
the API process.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from common import memory
from common.clock import utcnow
from common.config import Settings
from common.logging import configure_logging
from common.models.prediction import Prediction, predictions_from
from common.models.validation import validate_instances
from common.monitoring.prediction_log import new_prediction_id
from common.rollouts.arms import logged_arm
from common.storage.db import make_engine, make_session_factory, session_scope
from common.storage.tables import ModelVersion
from services.api.children import lower_priority
from services.api.model_cache import LoadedModel, load_serving
from services.api.prediction_log import PredictionLogWriter

log = logging.getLogger(__name__)

MAX_ROWS_PER_CALL = 512  # one predict call's rows: enough to amortise, not to stall
KEEP_CHALLENGERS = 2  # a rollout's challenger, and the next one's while it starts
RETRY_FAILED_SECONDS = 10.0  # a challenger that failed to load is tried again after


class ShadowRequest(NamedTuple):
    """One answered request for the challenger to score too (pickled to the shadow
    process: names and plain values only)."""

    model: str
    challenger_version_id: int
    rollout_id: int
    champion: list[Any]  # what the champion predicted, row by row
    prediction_ids: list[str]  # the champion's rows these shadow
    # The rows as the champion's validation built them when the challenger has the
    # same input schema (they are then valid for it too: not validated twice),
    # else the request's instances, validated here.
    rows: list[list[Any]] | None
    instances: list[Any] | None


Counts = dict[str, int]  # rows by model name


def run(conn: Connection, settings: Settings) -> None:
    """Score what `conn` sends until it closes (the API process ended) or sends None.
    Each batch is answered with (batch id, rows scored, rows dropped) once its log
    rows are written."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the API process stops us
    lower_priority(settings.writer_niceness(settings.rollout_shadow_nice))
    memory.limit_arenas(2)
    configure_logging(settings)
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    writer = (
        PredictionLogWriter(settings, factory) if settings.prediction_logging else None
    )
    challengers = Challengers(settings, factory)
    log.info("shadow process %d started (nice %d)", os.getpid(),
             os.getpriority(os.PRIO_PROCESS, 0))  # fmt: skip
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                break
            if message is None:
                break
            batch_id, requests = message
            scored, dropped = score_batch(requests, challengers, writer)
            if writer is not None:
                writer.flush()
            conn.send((batch_id, scored, dropped))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the API process went away: nothing to answer
    finally:
        if writer is not None:
            writer.close()
        engine.dispose()


class Challengers:
    """The challengers this process has loaded, by version id (a few at most)."""

    def __init__(self, settings: Settings, factory: Any) -> None:
        self.settings = settings
        self.factory = factory
        self._loaded: collections.OrderedDict[int, LoadedModel] = (
            collections.OrderedDict()
        )
        self._failed: dict[int, float] = {}

    def get(self, name: str, version_id: int) -> LoadedModel | None:
        """The loaded challenger, or None while it cannot be loaded."""
        model = self._loaded.get(version_id)
        if model is not None:
            self._loaded.move_to_end(version_id)
            return model
        failed = self._failed.get(version_id)
        if failed is not None and time.monotonic() - failed < RETRY_FAILED_SECONDS:
            return None
        try:
            with session_scope(self.factory) as session:
                version = session.get(ModelVersion, version_id)
                if version is None:
                    raise LookupError(f"no model version with id {version_id}")
                session.expunge(version)
            model = load_serving(self.settings, self.factory, name, version,
                                 generation=0)  # fmt: skip
        except Exception as exc:  # counted as dropped by the API process
            self._failed[version_id] = time.monotonic()
            log.warning("shadow: challenger %s (version id %d) failed to load: %s",
                        name, version_id, exc)  # fmt: skip
            return None
        self._failed.pop(version_id, None)
        self._loaded[version_id] = model
        while len(self._loaded) > KEEP_CHALLENGERS:
            self._loaded.popitem(last=False)
        return model


def score_batch(
    requests: list[ShadowRequest],
    challengers: Challengers,
    writer: PredictionLogWriter | None,
) -> tuple[Counts, Counts]:
    """Score `requests` by challenger, in calls of about `MAX_ROWS_PER_CALL` rows,
    and hand their log rows to `writer`. Returns the rows scored and dropped."""
    scored: Counts = collections.Counter()
    dropped: Counts = collections.Counter()
    groups: dict[tuple[str, int], list[ShadowRequest]] = collections.defaultdict(list)
    for request in requests:
        groups[(request.model, request.challenger_version_id)].append(request)
    for (name, version_id), group in groups.items():
        model = challengers.get(name, version_id)
        if model is None:
            dropped[name] += sum(len(r.prediction_ids) for r in group)
            continue
        for call in _calls(group):
            try:
                rows, count = _score(model, call)
            except Exception:  # a challenger may fail any way: never the champion
                log.exception("shadow scoring failed")
                dropped[name] += sum(len(r.prediction_ids) for r in call)
                continue
            scored[name] += count
            if writer is not None:
                writer.add(rows)
    return dict(scored), dict(dropped)


def _calls(requests: list[ShadowRequest]) -> list[list[ShadowRequest]]:
    """`requests` in order, in calls of about `MAX_ROWS_PER_CALL` rows."""
    calls: list[list[ShadowRequest]] = [[]]
    rows = 0
    for request in requests:
        if rows >= MAX_ROWS_PER_CALL:
            calls.append([])
            rows = 0
        calls[-1].append(request)
        rows += len(request.prediction_ids)
    return calls


def _score(
    model: LoadedModel, requests: list[ShadowRequest]
) -> tuple[list[dict[str, Any]], int]:
    """The challenger's log rows for `requests`, and how many rows it scored."""
    started = time.perf_counter()
    checked = [
        (r.rows, False) if r.rows is not None else _validated(model, r.instances or [])
        for r in requests
    ]
    flat = [row for rows, bad in checked if not bad for row in rows]
    failed: str | None = None
    answers: list[Prediction] = []
    if flat:
        try:
            scores = model.scorer.score_rows(model.input_schema, flat)
            answers = predictions_from(scores)
        except Exception as exc:  # counted as the challenger's errors
            failed = f"{type(exc).__name__}: {exc}"
    latency_ms = (time.perf_counter() - started) * 1000
    now, rows, cursor = utcnow(), [], 0
    for request, (_, bad) in zip(requests, checked, strict=True):
        ok = not bad and failed is None
        mine = answers[cursor : cursor + len(request.prediction_ids)] if ok else []
        if not bad:
            cursor += len(request.prediction_ids)
        rows.extend(_rows(model, request, mine, ok, latency_ms, now))
    if failed:
        log.warning("challenger %s v%d failed in shadow: %s", model.name,
                    model.version, failed)  # fmt: skip
    return rows, len(flat)


def _validated(model: LoadedModel, instances: list[Any]) -> tuple[list[Any], bool]:
    """The request's rows for the challenger's own schema, and whether any is bad."""
    paths = [f"instances[{i}]" for i in range(len(instances))]
    checked = validate_instances(model.input_schema, instances, paths)
    return checked.rows, bool(checked.problems)


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
         "data_quality": None,
         "request_rows": len(request.prediction_ids) if i == 0 else 0,
         "shadow_of": champion_id, "champion_prediction": str(theirs)}
        for i, (mine, theirs, champion_id) in enumerate(zip(
            answers, request.champion, request.prediction_ids, strict=True))
    ]  # fmt: skip
