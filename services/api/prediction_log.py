"""The background writer of prediction logs: requests hand over rows, never write.

Rows wait in a bounded in-memory spool and are written in batches, one transaction
per batch, with the per-minute rollups they add to and the labels that came before
them. A deep spool is written in larger transactions (up to TRANSACTION_BATCHES
batches), which is what lets the log keep up with batched traffic. While the
database accepts writes, a request that finds the spool past its high-water mark
waits (briefly) for the writer rather than have rows dropped: under load the log
sets the pace. If the database refuses, the rows stay and are retried and requests
do not wait; only when the spool is full are the oldest dropped, and every dropped
row is counted.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.monitoring.prediction_log import prepare_predictions, write_prepared
from common.monitoring.rollups import RollupWriter
from common.storage.db import session_scope
from services.api.prometheus import (
    LOG_DROPPED,
    LOG_PENDING,
    LOG_WRITE_FAILURES,
    LOG_WRITTEN,
)

log = logging.getLogger(__name__)

RETRY_BACKOFF_SECONDS = 1.0
TRANSACTION_BATCHES = 10  # a deep spool goes out up to 10 batches a transaction
HIGH_WATER = 0.5  # of the spool: past it, requests wait for a healthy writer
BACKPRESSURE_WAIT_SECONDS = 5.0  # the longest one request waits for it


class PredictionLogWriter:
    """Buffers prediction log rows and writes them from one thread."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        report_pending: bool = True,
    ) -> None:
        """With `report_pending` false the pending rows are not this writer's to
        report (a log process: its API process reports them, the pipe included)."""
        self.session_factory = session_factory
        self.report_pending = report_pending
        self._writing = 0  # rows taken from the spool and not yet written
        self.batch_size = settings.prediction_log_batch_size
        self.flush_seconds = settings.prediction_log_flush_ms / 1000
        self.capacity = settings.prediction_log_spool_size
        self._spool: collections.deque[dict[str, Any]] = collections.deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._drained = threading.Condition(self._lock)
        self._healthy = True  # the last write went through
        self._stop = threading.Event()
        self._everything = False  # the next wake-up writes every row, full batch or not
        self._thread: threading.Thread | None = None
        self.rollups = RollupWriter()
        self.written = 0
        self.dropped = 0
        self.write_failures = 0

    @property
    def pending(self) -> int:
        """Rows not yet written: in the spool, and in the transaction under way."""
        return len(self._spool) + self._writing

    def _report(self) -> None:
        if self.report_pending:
            LOG_PENDING.set(self.pending)

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Hand over rows; no database call. Waits only while the spool is past its
        high-water mark and the database is taking writes (the writer catches up)."""
        if self._thread is None:
            self.start()
        with self._lock:
            high_water = self.capacity * HIGH_WATER
            if len(self._spool) >= high_water and self._healthy:
                self._wake.set()
                self._drained.wait_for(
                    lambda: len(self._spool) < high_water or not self._healthy,
                    timeout=BACKPRESSURE_WAIT_SECONDS,
                )
            overflow = len(self._spool) + len(rows) - self.capacity
            if overflow > 0:
                for _ in range(min(overflow, len(self._spool))):
                    self._spool.popleft()
                self.dropped += overflow
                LOG_DROPPED.inc(overflow)
                log.warning("prediction log spool full; dropped=%d", self.dropped)
                rows = rows[-self.capacity :]
            self._spool.extend(rows)
            self._report()
            if len(self._spool) >= self.batch_size:
                self._wake.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="prediction-log-writer", daemon=True
                )
                self._thread.start()

    def write_now(self) -> None:
        """Have the thread write every row waiting now, not at its next interval
        (the log process: the rows came from an API process's own interval)."""
        self._everything = True
        self._wake.set()

    def close(self) -> None:
        """Stop the thread and write everything still buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.flush_seconds)
            self._wake.clear()
            # Woken by a full batch: write full batches only, so rows arriving during
            # a slow write wait for the next batch instead of going out a few at a time.
            # On the flush interval (or on stop) write everything.
            full_only = woken and not self._stop.is_set() and not self._everything
            self._everything = False
            if not self.flush(full_only=full_only):
                self._stop.wait(RETRY_BACKOFF_SECONDS)

    def flush(self, full_only: bool = False) -> bool:
        """Write buffered rows in batches. False when the database refused.

        With ``full_only`` a last partial batch stays for the next flush.
        """
        with self._flush_lock:
            while True:
                with self._lock:
                    waiting = len(self._spool)
                    take = 0 if full_only and waiting < self.batch_size else waiting
                    size = min(self.batch_size * TRANSACTION_BATCHES, take)
                    batch = [self._spool.popleft() for _ in range(size)]
                    self._writing = len(batch)  # still pending until written
                if not batch:
                    return True
                try:
                    self._write(batch)
                except IntegrityError:
                    self._write_one_by_one(batch)
                    self._done_writing()
                    continue
                except SQLAlchemyError as exc:
                    with self._lock:
                        self._spool.extendleft(reversed(batch))
                        self._writing = 0
                        self._report()
                        self._healthy = False  # requests stop waiting for it
                        self._drained.notify_all()
                    self.write_failures += 1
                    LOG_WRITE_FAILURES.inc()
                    log.warning("prediction log write failed, will retry: %s", exc)
                    return False
                self._count_written(len(batch))
                self._done_writing()
                with self._lock:
                    self._healthy = True
                    self._drained.notify_all()

    def _done_writing(self) -> None:
        with self._lock:
            self._writing = 0
            self._report()

    def _write_one_by_one(self, batch: list[dict[str, Any]]) -> None:
        """A batch with a row the schema refuses: keep the others, count that one."""
        for row in batch:
            try:
                self._write([row])
                self._count_written(1)
            except IntegrityError:
                self.dropped += 1
                LOG_DROPPED.inc()
                log.error("prediction log row refused by the database; dropped")

    def _write(self, rows: list[dict[str, Any]]) -> None:
        """The rows, their rollups and their early labels, in one transaction;
        what needs no lock made before it (`prepare_predictions`)."""
        with session_scope(self.session_factory) as session:
            prepared = prepare_predictions(session, rows, self.rollups)
        with session_scope(self.session_factory) as session:
            touched = write_prepared(session, prepared, self.rollups)
        self.rollups.adopt(touched)

    def _count_written(self, rows: int) -> None:
        self.written += rows
        LOG_WRITTEN.inc(rows)
