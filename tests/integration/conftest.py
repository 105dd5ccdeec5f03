from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from common import registry
from common.config import Settings, get_settings
from common.storage.db import make_engine, make_session_factory, session_scope
from common.storage.migrate import upgrade_database
from services.api.app import create_app, stop_background
from tests.factories import register_version


@pytest.fixture
def api_settings(settings: Settings) -> Iterator[Settings]:
    """Migrated SQLite settings whose broker URL points at a closed port."""
    settings = settings.with_overrides(redis_url="redis://127.0.0.1:9/0")
    engine = make_engine(settings)
    upgrade_database(engine)
    engine.dispose()
    yield settings


@pytest.fixture
def client(api_settings: Settings) -> Iterator[FlaskClient]:
    app = create_app(api_settings)
    yield app.test_client()
    app.extensions["engine"].dispose()


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
