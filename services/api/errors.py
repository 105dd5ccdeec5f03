"""One JSON error shape for every failure: ours, werkzeug's and unexpected ones."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from common.errors import AppError, UnauthorizedError, UnavailableError

log = logging.getLogger(__name__)


def _error_response(status: int, code: str, message: str, details: object) -> Response:
    response = jsonify(
        {"error": {"code": code, "message": message, "details": details}}
    )
    response.status_code = status
    return response


def handle_app_error(error: AppError) -> Response:
    response = _error_response(error.status, error.code, error.message, error.details)
    if isinstance(error, UnavailableError):
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    if isinstance(error, UnauthorizedError):
        response.headers["WWW-Authenticate"] = 'Bearer realm="modelops"'
    return response


def handle_http_exception(error: HTTPException) -> Response:
    code = (error.name or "error").lower().replace(" ", "_")
    response = _error_response(error.code or 500, code, error.description or "", {})
    if error.code == 405 and error.response is None:
        allowed = error.get_headers()
        response.headers.extend([(k, v) for k, v in allowed if k.lower() == "allow"])
    return response


def handle_unexpected(error: Exception) -> Response:
    log.exception("unhandled error: %s", type(error).__name__)
    return _error_response(500, "internal_error", "internal server error", {})


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(AppError, handle_app_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
