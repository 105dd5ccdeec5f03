"""The API serves compiled versions through ONNX Runtime with scikit-learn's
answers, says which runtime serves each version and why, follows
MODELOPS_INFERENCE_RUNTIME, and compiles a version from before on its first load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from common.models import registry
from common.models.compilation import random_rows
from common.models.validation import to_frame
from common.storage.db import make_engine, make_session_factory, session_scope
from common.storage.tables import ModelVersion
from tests.factories import register_version

pytestmark = pytest.mark.integration

ROWS = 3000


def promote_forest(settings, frame) -> None:
    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            version = register_version(session, settings, frame, "churned",
                                       model_type="random_forest")  # fmt: skip
            registry.promote_version(session, settings, version.version, reason="t")
    finally:
        engine.dispose()


def champion_row(settings, change=None) -> ModelVersion:
    """The champion's row, changed by `change` first when given."""
    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            row = session.scalars(
                select(ModelVersion).where(ModelVersion.state == "champion")
            ).one()
            if change is not None:
                change(row)
            session.flush()
            session.expunge(row)
            return row
    finally:
        engine.dispose()


def test_a_compiled_forest_answers_as_scikit_learn_on_thousands_of_rows(
    serving_settings, churn_frame, make_app
):
    promote_forest(serving_settings, churn_frame)
    app = make_app(serving_settings)
    app.extensions["model_cache"].refresh()
    client = app.test_client()
    status = client.get("/model/status").json
    assert status["runtime"] == status["serving_runtime"] == "onnx"
    assert status["serving_reason"] is None
    assert status["compile_check"]["mismatched_classes"] == 0

    version = champion_row(serving_settings)
    pipeline = registry.load_model(serving_settings, version)
    schema = registry.input_schema(version)
    rows = random_rows(schema, ROWS, np.random.default_rng(11))
    assert any(v is None for row in rows for v in row)  # missing values
    assert any("never-seen-category" in row for row in rows)  # unseen categories
    served = []
    for start in range(0, ROWS, 1000):
        instances = [dict(zip([s.name for s in schema], row, strict=True))
                     for row in rows[start : start + 1000]]  # fmt: skip
        answer = client.post("/predict", json={"instances": instances})
        assert answer.status_code == 200, answer.json
        served += answer.json["predictions"]
    expected = pipeline.predict_proba(to_frame(schema, rows))
    classes = [str(c) for c in pipeline.classes_]
    for answer, probabilities in zip(served, expected, strict=True):
        assert answer["prediction"] == pipeline.classes_[probabilities.argmax()]
        got = [answer["probabilities"][c] for c in classes]
        assert np.abs(np.asarray(got) - probabilities).max() <= 1e-5


def test_the_sklearn_setting_serves_scikit_learn_and_says_so(
    serving_settings, churn_frame, make_app, row
):
    promote_forest(serving_settings, churn_frame)
    app = make_app(serving_settings.with_overrides(inference_runtime="sklearn"))
    app.extensions["model_cache"].refresh()
    client = app.test_client()
    assert client.post("/predict", json={"features": row}).status_code == 200
    status = client.get("/model/status").json
    assert status["runtime"] == "onnx"  # compiled, but not used here
    assert status["serving_runtime"] == "sklearn"
    assert status["serving_reason"] == "MODELOPS_INFERENCE_RUNTIME=sklearn"


def test_the_onnx_setting_refuses_a_version_that_did_not_compile(
    serving_settings, churn_frame, make_app, row
):
    promote_forest(serving_settings, churn_frame)

    def not_matched(version: ModelVersion) -> None:
        version.runtime, version.runtime_reason = "sklearn", "forced: did not match"

    champion_row(serving_settings, not_matched)
    app = make_app(serving_settings.with_overrides(inference_runtime="onnx"))
    app.extensions["model_cache"].refresh()
    answer = app.test_client().post("/predict", json={"features": row})
    assert answer.status_code == 503
    assert "forced: did not match" in answer.json["error"]["message"]
    assert "MODELOPS_INFERENCE_RUNTIME=onnx" in answer.json["error"]["message"]


def test_a_version_from_before_compiles_on_its_first_load(
    serving_settings, churn_frame, make_app, row
):
    promote_forest(serving_settings, churn_frame)
    onnx = next(Path(serving_settings.artifact_dir).rglob("*.onnx"))
    onnx.unlink()

    def from_before(version: ModelVersion) -> None:  # as migration 0013 leaves it
        for column in registry.COMPILATION_COLUMNS:
            setattr(version, column, None)

    champion_row(serving_settings, from_before)
    app = make_app(serving_settings)
    app.extensions["model_cache"].refresh()
    client = app.test_client()
    assert client.post("/predict", json={"features": row}).status_code == 200
    status = client.get("/model/status").json
    assert status["runtime"] == status["serving_runtime"] == "onnx"
    recorded = champion_row(serving_settings)
    assert recorded.runtime == "onnx" and recorded.onnx_sha256
    assert list(Path(serving_settings.artifact_dir).rglob("*.onnx"))
