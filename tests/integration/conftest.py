from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from common.config import Settings, get_settings
from common.models import registry
from common.storage.db import make_engine, make_session_factory, session_scope
from services.api.app import create_app, stop_background
from tests.databases import INTEGRATION_BACKENDS, migrated_database
from tests.factories import register_version


@pytest.fixture(params=INTEGRATION_BACKENDS)
def api_settings(
    request: pytest.FixtureRequest, settings: Settings
) -> Iterator[Settings]:
    """Migrated settings (SQLite, and PostgreSQL when the suite is given one) whose
    broker URL points at a closed port."""
    settings = settings.with_overrides(redis_url="redis://127.0.0.1:9/0")
    with migrated_database(settings, request.param) as migrated:
        yield migrated


@pytest.fixture
def make_app() -> Iterator[Callable[[Settings], Flask]]:
    """`create_app` for a test that needs its own settings. Every app made is stopped
    when the test ends (threads, spooled log rows, database connections), so no
    connection outlives its test's database."""
    apps: list[Flask] = []

    def make(settings: Settings) -> Flask:
        apps.append(create_app(settings))
        return apps[-1]

    yield make
    for app in apps:
        stop_background(app)


@pytest.fixture
def client(
    api_settings: Settings, make_app: Callable[[Settings], Flask]
) -> FlaskClient:
    return make_app(api_settings).test_client()


def promote_new_version(settings: Settings, frame) -> int:
    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            version = register_version(session, settings, frame, "churned")
            registry.promote_version(session, settings, version.version, reason="test")
            return version.version
    finally:
        engine.dispose()


@pytest.fixture
def fresh_settings_cache() -> Iterator[None]:
    """The CLI reads settings from the environment through a cache: reset it."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


API_KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def serving_settings(api_settings: Settings) -> Settings:
    return api_settings.with_overrides(api_key=API_KEY)


@pytest.fixture
def serving_app(serving_settings: Settings, churn_frame) -> Iterator[Any]:
    """An app serving version 1 (a logistic regression on the synthetic data)."""
    promote_new_version(serving_settings, churn_frame)
    app = create_app(serving_settings)
    app.extensions["model_cache"].refresh()
    yield app
    stop_background(app)


@pytest.fixture
def serving(serving_app: Any) -> FlaskClient:
    return serving_app.test_client()


@pytest.fixture
def row() -> dict[str, Any]:
    return {
        "age": 40, "income": 50000.0, "tenure_months": 12, "monthly_spend": 70.5,
        "support_calls": 2, "usage_hours": 20.0, "plan": "basic", "region": "north",
    }  # fmt: skip
