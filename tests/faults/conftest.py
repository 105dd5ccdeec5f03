"""The fault suite: real processes on loopback, one injected fault per test, and the
figures each test measured written for docs/reliability.md."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import start_api, start_worker  # noqa: F401  (fixtures)

RESULTS = Path(__file__).resolve().parents[2] / "test-output" / "reliability"


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """Keep a case's measured figures (`python -m tests.faults.report` renders them
    into docs/reliability.md). A case records only when its assertions held."""

    def write(case: str, **figures: Any) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        entry = {"test": request.node.nodeid, "figures": figures}
        (RESULTS / f"{case}.json").write_text(json.dumps(entry, indent=2))

    return write
