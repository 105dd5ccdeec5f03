"""The fault suite: real processes on loopback, one injected fault per test; each
records its figures (the `record` fixture of tests/conftest.py) for the docs."""

from __future__ import annotations

from tests.e2e.conftest import (  # noqa: F401  (fixtures)
    empty_broker,
    start_api,
    start_worker,
)
