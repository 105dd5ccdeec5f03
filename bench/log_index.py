"""What the prediction id's order costs the log: the same 1000-row writes (the log
writer's insert path) into two fresh logs, one with random ids (UUIDv4, as before)
and one with time-ordered ids (UUIDv7, as now), batch by batch in turn, until each
holds `--rows` rows. Prints the median wall and CPU time per 1000 rows over each
stretch of `--every` rows: with random ids every batch lands on pages all over the
unique index, so the cost grows with the table.

Run: `.venv/bin/python -m bench.log_index [--rows N] [--database-url URL]`
(PostgreSQL: each log in a schema of its own, dropped after).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bench import say, scratch_dir
from common.clock import utcnow
from common.config import Settings
from common.monitoring.prediction_log import new_prediction_id
from common.storage.db import (
    make_engine,
    make_session_factory,
    scratch_schema,
    session_scope,
)
from common.storage.log_insert import insert_log_rows
from common.storage.migrate import upgrade_database

BATCH = 1000
IDS: dict[str, Callable[[], str]] = {
    "random (UUIDv4)": lambda: uuid.uuid4().hex,
    "time-ordered (UUIDv7)": new_prediction_id,
}
FEATURES = {f"f{i:02d}": 0.5 + i for i in range(20)}


@contextlib.contextmanager
def fresh_log(database_url: str | None) -> Iterator[sessionmaker[Session]]:
    with contextlib.ExitStack() as stack:
        settings = Settings(home=str(scratch_dir("bench-index-")))
        if database_url:
            url = stack.enter_context(scratch_schema(database_url, "bench_index"))
            settings = settings.with_overrides(database_url=url)
        engine = make_engine(settings)
        stack.callback(engine.dispose)
        upgrade_database(engine)
        yield make_session_factory(engine)


def batch(make_id: Callable[[], str]) -> list[dict[str, Any]]:
    now = utcnow()
    return [{"prediction_id": make_id(), "model": "default", "model_version_id": None,
             "model_version": 1, "features": FEATURES, "prediction": "1",
             "confidence": 0.7, "probabilities": {"0": 0.3, "1": 0.7},
             "latency_ms": 3.2, "status_code": 200, "data_quality": None,
             "request_rows": 1, "created_at": now, "arm": ""}
            for _ in range(BATCH)]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--every", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    say(f"{'PostgreSQL' if args.database_url else 'SQLite'}: {BATCH}-row writes, "
        "the two logs in turn; median per 1000 rows over each stretch\n")  # fmt: skip
    say("| rows in the log | ids | wall ms | CPU ms |\n| ---: | --- | ---: | ---: |")
    with contextlib.ExitStack() as stack:
        logs = {name: stack.enter_context(fresh_log(args.database_url)) for name in IDS}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in IDS}
        for index in range(args.rows // BATCH):
            for name, make_id in IDS.items():
                rows = batch(make_id)
                wall, cpu = time.perf_counter(), time.process_time()
                with session_scope(logs[name]) as session:
                    insert_log_rows(session, rows)
                times[name].append((time.perf_counter() - wall,
                                    time.process_time() - cpu))  # fmt: skip
            written = (index + 1) * BATCH
            if written % args.every == 0:
                for name in IDS:
                    stretch = times[name][-(args.every // BATCH) :]
                    wall_ms = statistics.median(t[0] for t in stretch) * 1000
                    cpu_ms = statistics.median(t[1] for t in stretch) * 1000
                    say(f"| {written:,} | {name} | {wall_ms:.1f} | {cpu_ms:.1f} |")


if __name__ == "__main__":
    main()
