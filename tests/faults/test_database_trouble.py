"""Case 6: the database refuses writes for a while: SQLite locked by another process
or its disk full, or PostgreSQL made read-only. `/predict` keeps answering;
prediction log rows wait in a bounded spool and are written when the database is
back; rows the full spool had to drop are counted in
`modelops_prediction_log_dropped_total`, never silent."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from common.storage.db import make_engine
from common.storage.tables import PredictionLog
from services.api.log_process import ROWS_PER_MESSAGE
from tests.databases import POSTGRES_URL
from tests.e2e.conftest import prepare_home
from tests.faults.load import PredictLoad

pytestmark = pytest.mark.faults

SPOOL = 400
# An outage lasts until the spools overflow (rows dropped and counted), whatever the
# machine's pace: a busy neighbour on the same cores only makes it longer.
LONGEST_OUTAGE_SECONDS = 60.0


def _scrape(api_url: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{api_url}/metrics/prometheus", timeout=10) as answer:
        body = answer.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name.startswith(("modelops_prediction_log", "modelops_database_up"))
    }


def _until_overflowing(api_url: str, workers: int) -> dict[str, float]:
    """The API's log figures once its spools overflowed (rows dropped and counted)
    and its writers tried again (each fails about twice, a second apart)."""
    deadline = time.monotonic() + LONGEST_OUTAGE_SECONDS
    while True:
        figures = _scrape(api_url)
        if (
            figures["modelops_prediction_log_dropped_total"] > 0
            and figures["modelops_prediction_log_write_failures_total"] >= 2 * workers
        ):
            return figures
        assert time.monotonic() < deadline, f"the spools never overflowed: {figures}"
        time.sleep(0.2)


def _until_answered(load: PredictLoad, answers: int) -> None:
    deadline = time.monotonic() + 30
    while len(load.answers) < answers:
        assert time.monotonic() < deadline, f"{len(load.answers)} answers of {answers}"
        time.sleep(0.05)


@contextmanager
def _sqlite_locked(settings) -> Iterator[None]:
    """Another process holds SQLite's write lock (a backup, a long migration) until
    its standard input closes."""
    path = settings.database_url.removeprefix("sqlite:///")
    ready = Path(settings.home) / "lock-held"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import pathlib, sqlite3, sys; c = sqlite3.connect(sys.argv[1], "
         "timeout=30, isolation_level=None); c.execute('BEGIN EXCLUSIVE'); "
         "pathlib.Path(sys.argv[2]).touch(); sys.stdin.read(); c.execute('COMMIT')",
         path, str(ready)],
        stdin=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.05)
        yield
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


@contextmanager
def _postgres_database() -> Iterator[str]:
    """A database of its own, so that making it read-only touches nothing else."""
    name = f"modelops_fault_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(POSTGRES_URL).set(database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}'"))  # fmt: skip
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def _set_read_only(database: str, read_only: bool) -> None:
    """New sessions of the database are read-only (or not); open ones are ended."""
    name = make_url(database).database
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        value = "on" if read_only else "off"
        connection.execute(
            text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {value}')
        )
        connection.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"))  # fmt: skip
    admin.dispose()


@contextmanager
def _postgres_read_only(database: str) -> Iterator[None]:
    _set_read_only(database, True)
    try:
        yield
    finally:
        _set_read_only(database, False)


@contextmanager
def _small_disk(directory: Path) -> Iterator[Path]:
    """A tmpfs of its own for the SQLite file, which the test can fill."""
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(directory)],
        capture_output=True, text=True,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@contextmanager
def _disk_full(directory: Path) -> Iterator[None]:
    """Fill the file system. The WAL is checkpointed and truncated first, so each
    commit needs new blocks (a WAL reuses its old ones and would not notice)."""
    import sqlite3

    connection = sqlite3.connect(directory / "modelops.db", timeout=30)
    try:
        deadline = time.monotonic() + 10
        while connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            assert time.monotonic() < deadline, "the WAL could not be truncated"
            time.sleep(0.05)  # busy: a reader holds a snapshot; try again
    finally:
        connection.close()
    filler = directory / "filler"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 12):  # megabytes, then the last pages
            with contextlib.suppress(OSError):  # ENOSPC: full
                while True:
                    os.write(handle, b"\0" * size)
    finally:
        os.close(handle)
    try:
        yield
    finally:
        filler.unlink()


@contextmanager
def _database(fault: str, tmp_path: Path) -> Iterator[tuple[str, Path | None]]:
    """The database URL for the case ("" is SQLite in the home) and its disk."""
    if fault.startswith("postgresql"):
        if not POSTGRES_URL:
            pytest.skip("MODELOPS_TEST_DATABASE_URL is not set")
        with _postgres_database() as url:
            yield url, None
    elif fault == "sqlite-disk-full":
        with _small_disk(tmp_path / "disk") as disk:
            yield f"sqlite:///{disk}/modelops.db", disk
    else:
        yield "", None


@pytest.mark.parametrize(
    "fault", ["sqlite-locked", "sqlite-disk-full", "postgresql-read-only"]
)
def test_predictions_go_on_and_log_rows_are_spooled_counted_and_written(
    fault, tmp_path, start_api, record
):
    with _database(fault, tmp_path) as (database_url, disk):
        settings = prepare_home(tmp_path / "home", database_url=database_url)
        api = start_api(
            settings,
            MODELOPS_PREDICTION_LOG_SPOOL_SIZE=str(SPOOL),
            MODELOPS_PREDICTION_LOG_BATCH_SIZE="50",
            MODELOPS_PREDICTION_LOG_FLUSH_MS="100",
            MODELOPS_SQLITE_BUSY_TIMEOUT_MS="200",
            MODELOPS_API_WORKERS="2",
        )
        outages = {
            "sqlite-locked": lambda: _sqlite_locked(settings),
            "sqlite-disk-full": lambda: _disk_full(disk),
            "postgresql-read-only": lambda: _postgres_read_only(settings.database_url),
        }
        outage = outages[fault]()
        with PredictLoad(api.url, clients=4) as load:
            _until_answered(load, 100)  # traffic flows and is logged
            with outage:
                started = time.monotonic()
                during = _until_overflowing(api.url, workers=2)  # still refusing
                ended = time.monotonic()
            _until_answered(load, len(load.answers) + 100)  # and after
        deadline = time.monotonic() + 30
        after = _scrape(api.url)
        while after["modelops_prediction_log_pending"] > 0:
            assert time.monotonic() < deadline, after
            time.sleep(0.5)
            after = _scrape(api.url)

        answered = {a.prediction_id for a in load.answers if a.status == 200}
        engine = make_engine(settings)
        with engine.connect() as connection:
            logged = set(connection.scalars(select(PredictionLog.prediction_id)))
        engine.dispose()
        dropped = after["modelops_prediction_log_dropped_total"]
        in_outage = [a for a in load.answers if started <= a.started <= ended]
        assert load.failed == [] and len(in_outage) > 100
        assert during["modelops_prediction_log_pending"] > 0  # spooled, not lost
        # Bounded, per API process: its log process's spool (SPOOL), what the pipe
        # to it holds (about two messages), and its own buffer (SPOOL at most, while
        # the log process cannot take rows: behind a slow database, restarting).
        bound = 2 * (2 * SPOOL + 2 * ROWS_PER_MESSAGE)
        assert during["modelops_prediction_log_pending"] <= bound
        assert after["modelops_prediction_log_write_failures_total"] > 0
        assert logged <= answered
        assert len(answered) - len(logged) == dropped  # every missing row is counted
        assert dropped > 0  # the outage outlasted the spool: the drops are visible
        record(
            f"database-{fault}",
            outage_seconds=round(ended - started, 1),
            requests=len(load.answers),
            requests_during_outage=len(in_outage),
            failed_requests=len(load.failed),
            spool_capacity_per_process=SPOOL,
            rows_logged=len(logged),
            rows_dropped_and_counted=int(dropped),
            rows_lost_uncounted=len(answered) - len(logged) - int(dropped),
        )
