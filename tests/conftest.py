"""Shared fixtures: settings on a temporary home, real databases, real small models."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from common.config import Settings
from common.data.datasets import load_dataset
from common.models.lifecycle import train_version
from common.storage.db import make_engine, make_session_factory
from common.storage.tables import ModelVersion
from services.launcher import free_port, redis_command
from tests.databases import INTEGRATION_BACKENDS, migrated_database


def train_champion(
    session: Session,
    settings: Settings,
    model_type: str = "logistic_regression",
    reason: str = "t",
) -> ModelVersion:
    """Train a version on the synthetic demo data and make it champion."""
    return train_version(
        session,
        settings,
        load_dataset(settings, "synthetic"),
        model_type=model_type,
        reason=reason,
        promote=True,
    ).version


# The files that take longest, longest first (measured in CI, each a minute or more).
# pytest-xdist hands whole files to its workers in collection order: started first,
# they run beside the many short files instead of finishing alone at the end.
LONGEST_FIRST = (
    "tests/faults/test_contention.py",
    "tests/e2e/test_readme_loop.py",
    "tests/browser/test_dashboard.py",
    "tests/e2e/test_supervisor.py",
    "tests/e2e/test_closed_loop.py",
    "tests/e2e/test_rollouts.py",
    "tests/faults/test_database_trouble.py",
    "tests/faults/test_worker_killed.py",
    "tests/faults/test_redis_restart.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the files longest first; the tests inside a file keep their order."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return (
            LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
        )

    items.sort(key=rank)  # a stable sort: everything else keeps its order


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Demo mode on, as under `modelops up`; a test of it off says so. The apps tests
    # build in this process write their prediction log from a thread: a log process
    # of their own would cost each of them a second of start-up. The log process is
    # tested in tests/integration/test_log_process.py and serves every end-to-end
    # test (their servers run on the defaults).
    return Settings(home=str(tmp_path / "home"), demo_rows=600, profile_sample_size=200,
                    demo="on", prediction_log_process=False)  # fmt: skip


@pytest.fixture(params=INTEGRATION_BACKENDS)
def db_settings(
    request: pytest.FixtureRequest, settings: Settings
) -> Iterator[Settings]:
    """Settings on a migrated database: SQLite always, PostgreSQL when configured."""
    with migrated_database(settings, request.param) as migrated:
        yield migrated


@pytest.fixture
def engine(db_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(db_settings)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def churn_frame() -> pd.DataFrame:
    """A small learnable mixed-type frame (the synthetic generator's baseline)."""
    from common.data.synthetic import generate

    return generate("baseline", 400, seed=7)


@pytest.fixture
def tiny_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=120)
    return pd.DataFrame(
        {
            "x": x,
            "color": rng.choice(["red", "blue"], size=120),
            "label": np.where(x > 0, "yes", "no"),
        }
    )


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on a free loopback port, stopped by PID at the end."""
    port = free_port()
    directory = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        redis_command(port, directory, append_only=False),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        from services.launcher import Child, redis_ok, wait_until

        wait_until(
            redis_ok(url), 20, "redis-server", Child("redis", process, directory)
        )
        yield url
    finally:
        process.terminate()
        process.wait(10)


RELIABILITY_RESULTS = (
    Path(__file__).resolve().parents[1] / "test-output" / "reliability"
)


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Keep a fault case's measured figures; `python -m tests.faults.report` renders
    them into docs/reliability.md. A case records only once its assertions held."""

    def write(case: str, **figures: Any) -> None:
        RELIABILITY_RESULTS.mkdir(parents=True, exist_ok=True)
        entry = {"test": request.node.nodeid, "figures": figures}
        (RELIABILITY_RESULTS / f"{case}.json").write_text(json.dumps(entry, indent=2))

    return write
