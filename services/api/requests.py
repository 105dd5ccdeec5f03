"""Reading JSON bodies: content type, size, syntax and schema, each clearly refused."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import UnsupportedMediaType

from common.errors import InvalidInputError

M = TypeVar("M", bound=BaseModel)


def read_json(*, optional: bool = False) -> Any:
    """Return the parsed body. NaN and Infinity parse to floats and are refused later,
    by field, with the rest of the problems.

    An over-limit body raises 413 (werkzeug) before it is read in full.
    """
    if optional and not request.content_length and not request.data:
        return {}
    if not request.is_json:
        raise UnsupportedMediaType(
            f"send a JSON body with Content-Type: application/json "
            f"(got {request.mimetype or 'none'!r})"
        )
    raw = request.get_data(cache=False)
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"body is not UTF-8: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise InvalidInputError("malformed JSON: nested too deeply") from exc


def parse_body(model: type[M], *, optional: bool = False) -> M:
    """Validate the body against `model`, listing every problem with its field."""
    data = read_json(optional=optional)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {
                "field": body_path(error["loc"], data, error["type"] == "missing"),
                "code": error["type"],
                "message": error["msg"],
            }
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise InvalidInputError(
            "request body does not match the schema", problems=problems
        ) from exc


def body_path(loc: tuple[int | str, ...], body: Any, missing: bool = False) -> str:
    """The field as it appears in the body (`label`, `0.label`), without the names
    pydantic adds for union members and tags (`FeedbackItem`, `constrained-str`)."""
    parts: list[str] = []
    value = body
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if (
            isinstance(value, dict)
            and isinstance(part, str)
            and (
                part in value or (last and missing)  # a key, or the one that is missing
            )
        ):
            parts.append(part)
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int):
            parts.append(str(part))
            value = value[part] if 0 <= part < len(value) else None
    return ".".join(parts) or "body"
