"""Shadow scoring off the request path: a challenger scores what the champion already
answered, and its answers are logged beside the champion's, never returned.

A request hands its shadow over to a bounded queue and goes on. One thread per API
process sleeps `GATHER_SECONDS` after the first request arrives, then sends what has
gathered, in one message, to the shadow's own process (services/api/shadow_worker.py),
which scores and logs it at a lower CPU priority, holding nothing the champion's
requests need. A message not yet answered counts as in flight; with
`MAX_IN_FLIGHT` of them the next gathering is dropped (while a new shadow process
starts, `STARTING_IN_FLIGHT`). So when the queue is full, or the shadow process
cannot keep up, or has died, shadow rows are dropped and counted
(`modelops_shadow_dropped_total`); the champion's answer is never delayed. A shadow
process that dies is started again (at most once per `RESTART_SECONDS`), and one
idle for `IDLE_SECONDS` is stopped, its memory returned.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from prometheus_client import Counter

from common.config import Settings
from services.api import shadow_worker
from services.api.children import start_child
from services.api.prometheus import SHADOW_DROPPED, SHADOW_SCORED
from services.api.shadow_worker import Counts, ShadowRequest

log = logging.getLogger(__name__)

__all__ = ["ShadowRequest", "ShadowScorer"]

# A shadow's answer is not awaited by anyone: gather a fifth of a second of traffic
# per message, so a busy model pays the hand-over a few times a second, not once per
# request (each wake-up of this thread takes the GIL from the threads answering).
GATHER_SECONDS = 0.2
MAX_IN_FLIGHT = 2  # gatherings sent and not yet scored: beyond, the next is dropped
# ...except while a new shadow process starts (imports, the challenger's load: a few
# seconds), when it cannot have answered yet: its first gatherings wait for it, in
# the pipe and then in the queue, instead of being dropped at any traffic.
STARTING_IN_FLIGHT = 50
RESTART_SECONDS = 5.0  # a shadow process that died is started again after this
IDLE_SECONDS = 60.0  # a shadow process with nothing to score for this long stops
STOP_SECONDS = 5.0  # how long a stopping shadow process may take to finish


class ShadowScorer:
    """The bounded queue, the thread that empties it, and the shadow process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._queue: queue.Queue[ShadowRequest] = queue.Queue(
            maxsize=settings.rollout_shadow_queue
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._in_flight: dict[int, Counts] = {}  # message id -> rows by model
        self._answered = False  # the running shadow process has answered once
        self._sent = 0
        self._last_sent = 0.0
        self._lost_at = -RESTART_SECONDS

    @property
    def pid(self) -> int | None:
        """The shadow process's id while it runs."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def submit(self, request: ShadowRequest) -> None:
        """Queue `request`, or drop it (counted) when the queue is full."""
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            SHADOW_DROPPED.labels(model=request.model).inc(len(request.prediction_ids))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="shadow-scorer", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then the shadow process (after what it was sent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(STOP_SECONDS)
            self._thread = None
        self._stop_process()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every queued request is scored and logged (tests, shutdown);
        whether it was within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks or self._in_flight:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._receive()
            try:
                first = self._queue.get(timeout=0.05 if self._in_flight else 0.2)
            except queue.Empty:
                self._retire_if_idle()
                continue
            # Let a fifth of a second of traffic gather, asleep: one wake-up per
            # gathering, not one per request.
            self._stop.wait(GATHER_SECONDS)
            waiting = [first]
            with contextlib.suppress(queue.Empty):
                while len(waiting) < self._queue.maxsize:
                    waiting.append(self._queue.get_nowait())
            try:
                self._hand_over(waiting)
            except Exception:  # never let the thread die: the next gathering goes on
                log.exception("shadow hand-over failed")
                _count(SHADOW_DROPPED, _rows_by_model(waiting))
            finally:
                for _ in waiting:
                    self._queue.task_done()

    def _hand_over(self, requests: list[ShadowRequest]) -> None:
        """Send `requests` to the shadow process, or drop them (counted)."""
        self._receive()
        rows = _rows_by_model(requests)
        limit = MAX_IN_FLIGHT if self._answered else STARTING_IN_FLIGHT
        conn = None if len(self._in_flight) >= limit else self._connection()
        if conn is None:
            _count(SHADOW_DROPPED, rows)
            return
        message = self._sent
        self._sent += 1
        self._in_flight[message] = rows
        try:
            conn.send((message, requests))
        except (OSError, ValueError):
            self._lost()
            return
        self._last_sent = time.monotonic()

    def _receive(self) -> None:
        """Count what the shadow process has answered (waiting a moment when a
        message is out, so that `drain` sees it soon)."""
        conn = self._conn
        wait = 0.01
        try:
            while conn is not None and self._in_flight and conn.poll(wait):
                self._count_answer(conn)
                wait = 0.0
        except (EOFError, OSError):
            self._lost()

    def _count_answer(self, conn: Connection) -> None:
        message, scored, dropped = conn.recv()
        self._answered = True
        self._in_flight.pop(message, None)
        _count(SHADOW_SCORED, scored)
        _count(SHADOW_DROPPED, dropped)

    # -- the process -----------------------------------------------------------

    def _connection(self) -> Connection | None:
        """The running shadow process's end of the pipe, started if need be; None
        while a process that died waits out `RESTART_SECONDS`."""
        if self._process is not None and self._process.is_alive():
            return self._conn
        if self._process is not None:
            self._lost()
        if time.monotonic() - self._lost_at < RESTART_SECONDS:
            return None
        process, ours = start_child(
            shadow_worker.run, (self.settings,), "modelops-shadow"
        )
        self._process, self._conn, self._answered = process, ours, False
        log.info("shadow process %d started", process.pid)
        return ours

    def _lost(self) -> None:
        """The shadow process died: what it was sent is dropped (counted)."""
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._drop_in_flight()
        self._lost_at = time.monotonic()
        if process is not None:
            process.join(0.1)
            log.warning("shadow process %d ended (exit code %s); started again on "
                        "the next shadowed request after %.0f s", process.pid,
                        process.exitcode, RESTART_SECONDS)  # fmt: skip

    def _retire_if_idle(self) -> None:
        idle = time.monotonic() - self._last_sent
        if self._process is not None and not self._in_flight and idle > IDLE_SECONDS:
            log.info("shadow process idle for %.0f s: stopped", idle)
            self._stop_process()

    def _stop_process(self) -> None:
        process, conn = self._process, self._conn
        self._process, self._conn = None, None
        if process is None or conn is None:
            return
        deadline = time.monotonic() + STOP_SECONDS
        with contextlib.suppress(OSError, ValueError, EOFError):
            conn.send(None)  # it ends after what it was sent: count those
            while self._in_flight and conn.poll(max(deadline - time.monotonic(), 0)):
                self._count_answer(conn)
        process.join(max(deadline - time.monotonic(), 0.1))
        if process.is_alive():
            process.terminate()
            process.join(1)
        conn.close()
        self._drop_in_flight()

    def _drop_in_flight(self) -> None:
        """What a shadow process that ended had not answered: dropped, counted."""
        for rows in self._in_flight.values():
            _count(SHADOW_DROPPED, rows)
        self._in_flight.clear()


def _rows_by_model(requests: list[ShadowRequest]) -> Counts:
    rows: collections.Counter[str] = collections.Counter()
    for request in requests:
        rows[request.model] += len(request.prediction_ids)
    return rows


def _count(counter: Counter, rows: Counts) -> None:
    for model, count in rows.items():
        if count:
            counter.labels(model=model).inc(count)
