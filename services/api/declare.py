"""What a route answers, declared on its view: the OpenAPI document is built from
these and from Flask's own routing (path, method), and auth from the view's key
decorators, so a route and its documentation cannot drift apart.

    @bp.get("/jobs/<int:job_id>")
    @api("One job", JobOut, errors=(404,), tags=("jobs",))
    def get_job(job_id): ...

A view of the API without a declaration fails the test that checks every route is
documented (tests/integration/test_openapi.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Declaration:
    """A route's answers, body, parameters and tags; path, method and auth come
    from the route itself."""

    summary: str
    ok: tuple[type[BaseModel], ...]
    ok_status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    other: dict[int, type[BaseModel]] = field(default_factory=dict)  # non-error bodies
    query: tuple[tuple[str, str], ...] = ()  # (name, JSON type) of query parameters
    upload: type[BaseModel] | None = None  # also (or only) multipart/form-data
    ok_media: str = "application/json"
    per_model_body: bool = False  # the body is the model's own input schema


def api(
    summary: str,
    *ok: type[BaseModel],
    **options: Any,
) -> Callable[[F], F]:
    """Declare a view's answers (see `Declaration`)."""

    answers = tuple(options.pop("ok", ok))

    def attach(view: F) -> F:
        declared = Declaration(summary, answers, **options)
        view.__api__ = declared  # type: ignore[attr-defined]
        return view

    return attach


def declaration_of(view: Callable[..., Any]) -> Declaration | None:
    found: Declaration | None = getattr(view, "__api__", None)
    return found


def auth_of(view: Callable[..., Any]) -> str | None:
    """ "api_key" (always keyed), "predict" (keyed with MODELOPS_PREDICT_AUTH) or None
    (a read), as set by the view's decorators in services/api/auth.py."""
    found: str | None = getattr(view, "__auth__", None)
    return found
