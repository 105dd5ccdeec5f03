from __future__ import annotations

import pytest

from common import errors


@pytest.mark.parametrize(
    ("error_class", "status", "code"),
    [
        (errors.InvalidInputError, 400, "invalid_input"),
        (errors.UnauthorizedError, 401, "unauthorized"),
        (errors.ModelNotFoundError, 404, "model_not_found"),
        (errors.ConflictError, 409, "conflict"),
        (errors.UnprocessableDataError, 422, "unprocessable_data"),
        (errors.ModelNotReadyError, 503, "model_not_ready"),
        (errors.DependencyError, 503, "dependency_unavailable"),
        (errors.ArtifactError, 409, "artifact_error"),
    ],
)
def test_error_carries_status_and_one_json_shape(error_class, status, code):
    error = error_class("something is wrong", field="x")
    assert error.status == status
    assert error.to_dict() == {
        "error": {
            "code": code,
            "message": "something is wrong",
            "details": {"field": "x"},
        }
    }
