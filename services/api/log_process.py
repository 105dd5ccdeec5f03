"""The prediction log's own process: one per API process, fed over a pipe.

Why a process: writing the log in a thread of the API process (encoding each row,
adding it to the rollups, SQLite's calls) took the GIL from the threads answering
requests. It cost about 35 µs of the server's CPU a row there, against 11 µs for the
same writes in a process of their own, and was what held logging on to 0.7 of the
requests a second of logging off (docs/performance.md). Here the API process only
gathers rows and sends them on, pickled, a few hundred at a time; the log process
writes them with the same `PredictionLogWriter` (spool, batches, retries, drop
counting) as the API process did.

What is kept: a request still waits, briefly, while the rows waiting are past the
high-water mark and the log process is taking them (the pipe fills when its spool is
past its own mark, so the database sets the pace, as before). Rows are dropped, and
counted, where the database refuses long enough to fill the log process's spool (the
oldest there), or where the buffer here is full while no log process can take them.
A log process that dies is started again `RESTART_SECONDS` later, whether rows wait
or not; what it had not acknowledged as written is counted as dropped, and what
waits here goes to the new one. When the API process ends, everything is sent and
written before it exits; when it is killed, the log process still writes what it was
sent, then ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from prometheus_client import multiprocess

from common import memory
from common.config import Settings
from common.logging import configure_logging
from common.storage.db import make_engine, make_session_factory
from services.api.children import lower_priority, start_child
from services.api.prediction_log import (
    BACKPRESSURE_WAIT_SECONDS,
    HIGH_WATER,
    PredictionLogWriter,
)
from services.api.prometheus import LOG_DROPPED, LOG_PENDING

log = logging.getLogger(__name__)

# Rows per message: pickling holds the GIL, and a request thread waits behind it, so
# a message is pickled in about a millisecond, not in the five of a whole batch.
ROWS_PER_MESSAGE = 250
RESTART_SECONDS = 1.0  # a log process that died is started again after this
STOP_SECONDS = 30.0  # how long a stopping log process may take to write the rest


class LogProcess:
    """The API process's side: the buffer, the thread that sends it on, and the
    log process. Offers what `PredictionLogWriter` offers the request path."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.batch_size = settings.prediction_log_batch_size
        self.flush_seconds = settings.prediction_log_flush_ms / 1000
        self.capacity = settings.prediction_log_spool_size
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._send_lock = threading.Lock()  # the pipe: one sender at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._lost_at = -RESTART_SECONDS
        self._flushes = 0
        self._sending = 0  # rows taken from the buffer, their message not yet sent
        self._sent = 0  # rows sent to the running log process
        self._acked = 0  # of those, how many it has written (or dropped, counted)
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Rows gathered here and not yet sent to the log process, those of the
        message being sent included (a process killed now loses them)."""
        return len(self._rows) + self._sending

    def _report(self) -> None:
        """The API process reports its log's pending rows: those gathered here, and
        those sent that the log process has not said are written (on their way,
        in its spool or in its transaction)."""
        LOG_PENDING.set(self.pending + self._sent - self._acked)

    @property
    def pid(self) -> int | None:
        """The log process's id while it runs."""
        process = self._process
        return process.pid if process is not None and process.is_alive() else None

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Hand over rows; no database call, no pickling. Waits only while the rows
        waiting are past the high-water mark and the log process takes them."""
        if self._thread is None:
            self.start()
        with self._lock:
            high_water = self.capacity * HIGH_WATER
            if len(self._rows) >= high_water and self._conn is not None:
                self._wake.set()
                self._room.wait_for(
                    lambda: len(self._rows) < high_water or self._conn is None,
                    timeout=BACKPRESSURE_WAIT_SECONDS,
                )
            overflow = len(self._rows) + len(rows) - self.capacity
            if overflow > 0:
                del self._rows[: min(overflow, len(self._rows))]
                self._count_dropped(overflow)
                rows = rows[-self.capacity :]
            self._rows.extend(rows)
            if len(self._rows) >= self.batch_size:
                self._wake.set()

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="prediction-log-sender", daemon=True
                )
                self._thread.start()

    def flush(self, timeout: float = STOP_SECONDS) -> bool:
        """Send every row gathered and wait until the log process has written it
        (tests, shutdown). False when it could not be written within `timeout`."""
        with self._send_lock:
            if not self._send_all():
                return False
            conn = self._connection()  # one that died is replaced, rows or not
            if conn is None:
                return False
            self._flushes += 1
            deadline = time.monotonic() + timeout
            try:
                conn.send(("flush", self._flushes))
                while conn.poll(max(deadline - time.monotonic(), 0)):
                    kind, token, value = conn.recv()
                    if kind == "ack":
                        self._acked = value
                    elif token == self._flushes:
                        return bool(value)
            except (OSError, EOFError, ValueError):
                self._lost()
            return False

    def close(self) -> None:
        """Stop the thread, send the rest, and let the log process write it and
        end. What could not be written is counted as dropped."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_SECONDS)
            self._thread = None
        with self._send_lock:
            self._lost_at = -RESTART_SECONDS  # no waiting to restart: the rest goes
            self._send_all()
            process, conn = self._process, self._conn
            self._process, self._conn = None, None
        with self._lock:
            self._count_dropped(len(self._rows))  # no log process would take them
            self._rows.clear()
        if process is None or conn is None:
            return
        with contextlib.suppress(OSError, ValueError):
            conn.send(None)
        process.join(STOP_SECONDS)
        if process.is_alive():
            log.warning("log process %d did not end in %.0f s: terminated",
                        process.pid, STOP_SECONDS)  # fmt: skip
            process.terminate()
            process.join(5)
        self._settle(conn)

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        with self._send_lock:
            self._connection()  # started with the API process: ready for its traffic
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            with self._send_lock:
                try:
                    # A log process that died is replaced once its delay is out,
                    # not only when rows wait: a flush, or the next burst, finds
                    # one ready.
                    self._connection()
                    if self._rows and self._send_all():
                        self._write_now()
                    if self._conn is not None:
                        self._read_acks(self._conn)
                    self._report()
                except (OSError, EOFError, ValueError):
                    self._lost()
                except Exception:  # never let the thread die: the rows wait here
                    log.exception("prediction log hand-over failed")

    def _write_now(self) -> None:
        """Tell the log process to write what it was sent at once: those rows have
        waited their interval here already."""
        conn = self._conn
        if conn is not None:
            try:
                conn.send(("write", None))
            except (OSError, ValueError):
                self._lost()

    def _send_all(self) -> bool:
        """Send what waits, a message at a time (the caller holds the send lock).
        False when no log process could take it; the rows then stay here."""
        while self._rows:
            conn = self._connection()
            if conn is None:
                return False
            with self._lock:
                batch = self._rows[:ROWS_PER_MESSAGE]
                del self._rows[:ROWS_PER_MESSAGE]
                self._sending = len(batch)
                self._room.notify_all()
            try:
                self._read_acks(conn)
                conn.send(("rows", batch))
            except (OSError, EOFError, ValueError):  # it died: the next one takes them
                with self._lock:
                    self._rows[:0] = batch
                    self._sending = 0
                self._lost()
                return False
            self._sent += len(batch)
            self._sending = 0
            self._report()
        return True

    def _read_acks(self, conn: Connection) -> None:
        """Take in what the log process says it has written so far."""
        while conn.poll(0):
            kind, _token, value = conn.recv()
            if kind == "ack":
                self._acked = value

    # -- the process -----------------------------------------------------------

    def _connection(self) -> Connection | None:
        """The running log process's end of the pipe, started if need be; None
        while a process that died waits out `RESTART_SECONDS`."""
        if self._process is not None and self._process.is_alive():
            return self._conn
        if self._process is not None:
            self._lost()
        if time.monotonic() - self._lost_at < RESTART_SECONDS:
            return None
        process, ours = start_child(run, (self.settings,), "modelops-prediction-log")
        with self._lock:
            self._process, self._conn = process, ours
        self._sent = self._acked = 0
        log.info("log process %d started", process.pid)
        return ours

    def _lost(self) -> None:
        """The log process died: what it held and had not written is lost with it,
        counted as dropped."""
        with self._lock:
            process, self._process = self._process, None
            conn, self._conn = self._conn, None
            self._room.notify_all()  # requests stop waiting for it
        if conn is not None:
            self._settle(conn)
        self._lost_at = time.monotonic()
        if process is not None:
            process.join(0.1)
            _forget(process.pid)
            log.warning("log process %d ended (exit code %s); started again in "
                        "%.0f s", process.pid, process.exitcode,
                        RESTART_SECONDS)  # fmt: skip

    def _settle(self, conn: Connection) -> None:
        """Done with a log process's pipe: take in its last word (all it wrote) and
        count what it was sent and never said it wrote as dropped."""
        with contextlib.suppress(OSError, EOFError, ValueError):
            self._read_acks(conn)
        conn.close()
        self._count_dropped(self._sent - self._acked)
        self._sent = self._acked = 0
        self._report()

    def _count_dropped(self, rows: int) -> None:
        if rows > 0:
            self.dropped += rows
            LOG_DROPPED.inc(rows)
            log.warning("prediction log rows dropped: %d (in all %d)", rows,
                        self.dropped)  # fmt: skip


def run(conn: Connection, settings: Settings) -> None:
    """Write what `conn` sends until it closes (the API process ended or was killed)
    or sends None. Rows are written in full batches, or all at once when told
    ("write": they waited their interval in the API process). Says how many rows it
    has written (or dropped, counted) as that changes, and answers each ("flush",
    token) once everything before it is written."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the API process stops us
    signal.signal(signal.SIGTERM, _exit)  # terminated: write the spool, then end
    # Background work that still gets its share of a core (niced on PostgreSQL
    # only: on SQLite it holds the one write lock every writer waits for); a lag is
    # its spool's, bounded by the high-water mark and the backpressure on requests
    # (docs/performance.md).
    lower_priority(settings.writer_niceness(settings.prediction_log_nice))
    memory.limit_arenas(2)
    configure_logging(settings)
    engine = make_engine(settings)
    writer = PredictionLogWriter(
        settings, make_session_factory(engine), report_pending=False
    )
    memory.for_streaming()  # what start-up made stays: collections skip it
    writer.start()
    wait = settings.prediction_log_flush_ms / 1000
    acked = 0
    try:
        while True:
            if conn.poll(wait):
                try:
                    message = conn.recv()
                except EOFError:
                    break
                if message is None:
                    break
                kind, payload = message
                if kind == "rows":
                    writer.add(payload)
                elif kind == "write":
                    writer.write_now()
                else:
                    written = writer.flush() and writer.pending == 0
                    acked = _ack(conn, writer, acked)  # counted before it is told
                    conn.send(("flushed", payload, written))
            acked = _ack(conn, writer, acked)
    except (BrokenPipeError, ConnectionResetError, SystemExit):
        pass
    finally:
        writer.close()
        engine.dispose()
        with contextlib.suppress(OSError, ValueError):
            conn.send(("ack", None, writer.written + writer.dropped))
        _forget(os.getpid())


def _ack(conn: Connection, writer: PredictionLogWriter, acked: int) -> int:
    """Tell the API process how many rows are written or dropped (counted), when
    that changed; what it sent beyond them is lost if this process dies."""
    handled = writer.written + writer.dropped
    if handled != acked:
        conn.send(("ack", None, handled))
    return handled


def _exit(signum: int, frame: Any) -> None:
    sys.exit(0)


def _forget(pid: int | None) -> None:
    """Drop a log process's live gauge (its spool) from the metrics."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory and pid is not None:
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, directory)
