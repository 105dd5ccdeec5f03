"""The API serves models whose artifacts live on a non-local fsspec filesystem."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from fsspec.core import url_to_fs

from tests.integration.conftest import promote_new_version

pytestmark = pytest.mark.integration


def test_a_model_stored_on_a_non_local_filesystem_is_served_verified(
    serving_settings, churn_frame, make_app, row
):
    root = f"memory://served-{uuid.uuid4().hex[:8]}"
    settings = serving_settings.with_overrides(artifact_dir=root)
    version = promote_new_version(settings, churn_frame)
    app = make_app(settings)
    app.extensions["model_cache"].refresh()
    client = app.test_client()

    answer = client.post("/predict", json={"features": row})
    assert answer.status_code == 200, answer.json
    assert answer.headers["X-Model-Version"] == str(version)

    fs, folder = url_to_fs(root)
    # The pipeline and its compiled model are in the store, nowhere else.
    stored = {path.rsplit(".", 1)[1]: path for path in fs.find(folder)}
    assert sorted(stored) == ["joblib", "onnx"]
    status = client.get("/model/status").json
    assert hashlib.sha256(fs.cat_file(stored["joblib"])).hexdigest() == status["sha256"]
    assert status["runtime"] == status["serving_runtime"] == "onnx"
    assert not list(Path(serving_settings.home).rglob("*.joblib"))
    assert not list(Path(serving_settings.home).rglob("*.onnx"))
    fs.rm(folder, recursive=True)
