"""The one error hierarchy. Every error raised on purpose carries its HTTP status.

AppError (500 internal_error)
├── ConfigError (500 config_error)            a setting is unknown or malformed
├── InvalidInputError (400 invalid_input)     payload or parameters fail validation
├── UnauthorizedError (401 unauthorized)      missing or wrong API key
├── ForbiddenError (403 forbidden)            the deployment does not allow it
├── NotFoundError (404 not_found)
│   ├── ModelNotFoundError (model_not_found)
│   ├── JobNotFoundError (job_not_found)
│   └── DatasetNotFoundError (dataset_not_found)
├── ConflictError (409 conflict)
│   └── VersionExistsError (version_exists)
├── UnprocessableDataError (422 unprocessable_data)
├── ArtifactError (500 artifact_error)        artifact missing, tampered or truncated
└── UnavailableError (503 unavailable)        answered with Retry-After
    ├── ModelNotReadyError (model_not_ready)  no champion yet, or not loaded
    └── DependencyError (dependency_unavailable)  Redis, a locked DB, artifact IO
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error we raise on purpose. Subclasses set `status` and `code`."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """Return the one JSON error shape."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": self.details,
            }
        }


class ConfigError(AppError):
    code = "config_error"


class InvalidInputError(AppError):
    status, code = 400, "invalid_input"


class UnauthorizedError(AppError):
    status, code = 401, "unauthorized"


class ForbiddenError(AppError):
    status, code = 403, "forbidden"


class PredictionTimeoutError(AppError):
    status, code = 408, "timeout"


class NotFoundError(AppError):
    status, code = 404, "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class JobNotFoundError(NotFoundError):
    code = "job_not_found"


class DatasetNotFoundError(NotFoundError):
    code = "dataset_not_found"


class ConflictError(AppError):
    status, code = 409, "conflict"


class VersionExistsError(ConflictError):
    code = "version_exists"


class UnprocessableDataError(AppError):
    status, code = 422, "unprocessable_data"


class ArtifactError(AppError):
    """A version's artifact is missing or damaged: it cannot serve (409 when asked
    to promote it)."""

    status, code = 409, "artifact_error"


class UnavailableError(AppError):
    status, code = 503, "unavailable"
    retry_after_seconds: ClassVar[int] = 5


class ModelNotReadyError(UnavailableError):
    code = "model_not_ready"


class DependencyError(UnavailableError):
    code = "dependency_unavailable"
