"""Which model a request acts on: the `<model_name:name>` of its path, or the default
model for the root routes (/predict, /model/status, /metrics, ...)."""

from __future__ import annotations

from flask import request
from werkzeug.routing import BaseConverter

from common.config import Settings
from common.models import catalog
from services.api.context import this_app
from services.api.database import get_session


class ModelNameConverter(BaseConverter):
    """A model name in a path. Names start with a letter, so `/models/3` (a version
    of the default model, the single-model API's route) never matches a name."""

    regex = r"[a-z][a-z0-9_-]{0,62}"


def settings() -> Settings:
    result: Settings = this_app().extensions["settings"]
    return result


def default_model() -> str:
    return settings().default_model


def model_settings(name: str | None = None) -> Settings:
    """The settings of model `name` (default: the default model) once it is known to
    exist; 404 naming the models there are otherwise. The default model is always
    taken to exist: before its first version its routes answer 503, not ready."""
    name = name or default_model()
    if name != default_model():
        catalog.get_model(get_session(), name)
    return settings().for_model(name)


def model_filter() -> str | None:
    """The `model` query parameter of a list (jobs, alerts), checked: a bad name is
    400, an unknown one 404 naming the known ones."""
    name = request.args.get("model")
    if name is None:
        return None
    catalog.check_model_name(name)
    catalog.get_model(get_session(), name)
    return name
