"""The champions one API process keeps: loaded on first use within a memory budget,
least recently used out, the default model never; an unknown model is 404 and a
model that is still loading is 503 once the request's time is up."""

from __future__ import annotations

import pytest

from common.errors import ModelNotFoundError, ModelNotReadyError
from common.models import registry
from common.storage.db import session_scope
from services.api.model_cache import ModelCache
from tests.factories import register_version


def _champion(session_factory, settings, name, frame, model_type):
    scoped = settings.for_model(name)
    with session_scope(session_factory) as session:
        version = register_version(session, scoped, frame, "churned",
                                   model_type=model_type)  # fmt: skip
        registry.promote_version(session, scoped, version.version, reason="test")


def test_models_load_on_demand_and_the_least_recently_used_leaves_first(
    session_factory, db_settings, churn_frame
):
    for name, kind in (("default", "logistic_regression"), ("forest", "random_forest"),
                       ("small", "logistic_regression"),
                       ("boosted", "hist_gradient_boosting")):  # fmt: skip
        _champion(session_factory, db_settings, name, churn_frame, kind)
    probe = ModelCache(db_settings, session_factory)
    sizes = {n: probe.require(n, 60).size_bytes for n in ("forest", "small", "boosted")}
    probe.stop()
    assert sizes["forest"] > 20 * sizes["small"] > 0  # a hundred trees weigh more
    # A budget that holds the forest or the two small ones, never all three.
    budget = sizes["forest"] + sizes["small"] // 2
    cache = ModelCache(db_settings.with_overrides(model_cache_mb=1), session_factory)
    cache.budget_bytes = budget
    try:
        assert cache.refresh() is not None  # the default model, loaded at start
        assert cache.get("small") is None  # nothing else until it is asked for
        assert cache.require("small", 60).name == "small"
        assert cache.require("boosted", 60).name == "boosted"
        assert cache.require("forest", 60).name == "forest"  # the others must go
        loaded = {m.name for m in cache.loaded()}
        assert loaded == {"default", "forest"} and cache.evictions == 2
        cache.require("small", 60)  # back in; the forest was used last, it stays
        assert {m.name for m in cache.loaded()} >= {"default", "small"}
        # Larger than the whole budget: it still serves, alone beside the default.
        cache.budget_bytes = 1
        assert cache.require("forest", 60).name == "forest"
        assert {m.name for m in cache.loaded()} == {"default", "forest"}
    finally:
        cache.stop()


def test_an_unknown_model_is_404_and_one_without_a_champion_503(
    session_factory, db_settings, churn_frame
):
    _champion(session_factory, db_settings, "default", churn_frame,
              "logistic_regression")  # fmt: skip
    with session_scope(session_factory) as session:  # registered, never promoted
        register_version(session, db_settings.for_model("draft"), churn_frame,
                         "churned")  # fmt: skip
    cache = ModelCache(db_settings, session_factory)
    try:
        with pytest.raises(ModelNotFoundError, match="models are default, draft"):
            cache.require("fraud", 5)
        with pytest.raises(ModelNotReadyError, match="'draft' has been promoted"):
            cache.require("draft", 5)
    finally:
        cache.stop()


def test_a_request_waits_for_a_load_only_as_long_as_its_budget(
    session_factory, db_settings, churn_frame
):
    _champion(session_factory, db_settings, "forest", churn_frame, "random_forest")
    cache = ModelCache(db_settings, session_factory)
    try:
        with pytest.raises(ModelNotReadyError, match="'forest' is loading"):
            cache.require("forest", 0.0)  # no time at all: 503, the load goes on
        assert cache.require("forest", 60).name == "forest"  # the same load
        assert cache.loads == 1
    finally:
        cache.stop()
