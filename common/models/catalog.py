"""The deployment's named models: each with its task, versions and champion.

A model exists once a version of it is registered (trained here or brought in); its
name is fixed for life, since prediction logs, jobs, alerts and audit rows carry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from common.config import MODEL_NAME_PATTERN
from common.errors import ConflictError, InvalidInputError, ModelNotFoundError
from common.storage.tables import Model

TASKS = ("classification", "regression")


def check_model_name(name: str) -> str:
    """Raises `InvalidInputError` for a name the registry cannot hold."""
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise InvalidInputError(
            f"{name!r} is not a model name: a lower-case letter, then up to 62 "
            "lower-case letters, digits, '_' or '-'",
            field="name",
        )
    return name


def list_models(session: Session) -> Sequence[Model]:
    return session.scalars(select(Model).order_by(Model.name)).all()


def model_names(session: Session) -> list[str]:
    return list(session.scalars(select(Model.name).order_by(Model.name)))


def find_model(session: Session, name: str) -> Model | None:
    return session.get(Model, name)


def get_model(session: Session, name: str) -> Model:
    """Raises `ModelNotFoundError` naming the models there are."""
    model = session.get(Model, name)
    if model is None:
        known = model_names(session)
        raise ModelNotFoundError(
            f"no model named {name!r}; "
            + (f"models are {', '.join(known)}" if known else "no model is registered"),
            model=name,
            known=known,
        )
    return model


def ensure_model(
    session: Session,
    name: str,
    task: str,
    *,
    description: str | None = None,
    source: dict[str, Any] | None = None,
) -> Model:
    """The model `name`, created with `task` when new.

    Raises
    ------
    ConflictError
        The model exists with another task (a regressor cannot become a version of
        a classifier: its metrics, gate and feedback would not compare).
    """
    check_model_name(name)
    model = session.get(Model, name)
    if model is None:
        model = Model(name=name, task=task, description=description,
                      source=source or {})  # fmt: skip
        try:
            with session.begin_nested():
                session.add(model)
        except IntegrityError:  # another process created it first
            model = session.get(Model, name)
            assert model is not None
    if model.task != task:
        raise ConflictError(
            f"model {name!r} is a {model.task} model; this version is a {task} model",
            model=name,
            task=model.task,
        )
    if description and not model.description:
        model.description = description
    return model
