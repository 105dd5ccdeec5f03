"""Reading JSON bodies: content type, size, syntax and schema, each clearly refused."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import orjson
from flask import Request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from common.errors import InvalidInputError
from services.api.context import this_request

M = TypeVar("M", bound=BaseModel)


def read_json(*, optional: bool = False, or_else: str = "") -> Any:
    """Return the parsed body. NaN and Infinity parse to floats and are refused later,
    by field, with the rest of the problems. `or_else` names another body the route
    accepts, for the 415 message.

    An over-limit body raises 413 (werkzeug) before it is read in full, whether it
    announces its length or is sent chunked.
    """
    request = this_request()
    if optional and not request.content_length and not request.data:
        return {}
    if not request.is_json:
        accepted = "a JSON body with Content-Type: application/json"
        raise UnsupportedMediaType(
            f"send {accepted}{f', or {or_else}' if or_else else ''} "
            f"(got {request.mimetype or 'no Content-Type'!r})"
        )
    raw = _read_body(request)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # the standard parser: its messages, and NaN parsed to be refused later
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"body is not UTF-8: {exc.reason}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"malformed JSON: {_json_problem(exc)}") from exc
    except RecursionError as exc:
        raise InvalidInputError("malformed JSON: nested too deeply") from exc


def _read_body(request: Request) -> bytes:
    """The whole body, refusing one over the limit. A chunked body has no length to
    check up front, and werkzeug's limited stream stops at the limit without saying
    so: a truncated document then read as "malformed JSON". One byte past the limit
    tells a complete body from a cut one."""
    limit = request.max_content_length
    if request.content_length is not None or limit is None:
        return request.get_data(cache=False)
    stream = request.environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(64 * 1024, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise RequestEntityTooLarge(
            f"the body is over the limit of {limit} bytes (MODELOPS_MAX_REQUEST_BYTES)"
        )
    return b"".join(chunks)


def _json_problem(error: json.JSONDecodeError) -> str:
    """The decoder's message once: some already end in 'at', which its own position
    suffix doubled ("Unterminated string starting at at line 1")."""
    message = error.msg.removesuffix(" at")
    return f"{message} at line {error.lineno} column {error.colno}"


def parse_body(model: type[M], *, optional: bool = False, or_else: str = "") -> M:
    """Validate the body against `model`, listing every problem with its field."""
    data = read_json(optional=optional, or_else=or_else)
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
