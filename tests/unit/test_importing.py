"""Bring your own model: each accepted format registers and serves; each refused one
is refused with its reason and registers nothing. Every registration checks the
file in a real child process, as `modelops register` and `POST /models` do."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from common.errors import ConflictError, InvalidInputError, UnprocessableDataError
from common.models import catalog, registry
from common.models.importing import ImportRequest, register_file
from common.models.prediction import predict_rows
from common.models.validation import to_frame
from common.storage.db import session_scope
from tests.models.user_code import Doubler, EatsMemoryWhenLoaded, SleepsWhenLoaded

NUMBERS = ["age", "income", "tenure_months"]

# The child process is what these cost (seconds each). Registration's writes run on
# both backends in the tests that store a version's schema, profile and metrics here
# and in tests/integration/test_many_models.py; refusals write nothing, so SQLite.
ON_SQLITE = pytest.mark.parametrize("db_settings", ["sqlite"], indirect=True)
CATEGORIES = ["plan", "region"]


@pytest.fixture
def reference(tmp_path: Path, churn_frame: pd.DataFrame) -> Path:
    path = tmp_path / "reference.csv"
    churn_frame[[*NUMBERS, *CATEGORIES, "churned"]].to_csv(path, index=False)
    return path


def classifier(frame: pd.DataFrame) -> Pipeline:
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([
            ("numbers", StandardScaler(), NUMBERS),
            ("categories", OneHotEncoder(handle_unknown="ignore"), CATEGORIES),
        ])),
        ("model", LogisticRegression(max_iter=500)),
    ])  # fmt: skip
    return pipeline.fit(frame[NUMBERS + CATEGORIES], frame["churned"])


def regressor(frame: pd.DataFrame) -> Pipeline:
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([
            ("numbers", "passthrough", ["age", "tenure_months"]),
            ("categories", OneHotEncoder(handle_unknown="ignore"), CATEGORIES),
        ])),
        ("model", RandomForestRegressor(n_estimators=20, random_state=0)),
    ])  # fmt: skip
    return pipeline.fit(frame[["age", "tenure_months", *CATEGORIES]], frame["income"])


def register(session, settings, name, artifact: Path, reference: Path, **options):
    target = options.pop("target", "churned")
    request = ImportRequest(name=name, artifact=artifact, filename=artifact.name,
                            reference=reference, target=target, **options)  # fmt: skip
    return register_file(session, settings, request)


def serves(settings, version) -> list:
    """The stored artifact, loaded as the API loads it, answers rows."""
    pipeline = registry.load_model(settings.for_model(version.name), version)
    schema = registry.input_schema(version)
    rows = [[spec.categories[0] if spec.categories else spec.min for spec in schema]]
    return predict_rows(pipeline, to_frame(schema, rows))


def test_a_skops_pipeline_registers_with_its_schema_profile_and_metrics(
    session_factory, db_settings, churn_frame, reference, tmp_path
):
    artifact = tmp_path / "churn.skops"
    sio.dump(classifier(churn_frame), artifact)
    with session_scope(session_factory) as session:
        done = register(session, db_settings, "churn", artifact, reference,
                        description="who leaves")  # fmt: skip
        version = done.version
        assert (version.name, version.version, version.task) == (
            "churn",
            1,
            "classification",
        )
        assert done.promoted  # a new model's first version serves
        assert version.model_type == "Pipeline/LogisticRegression"
        kinds = {s["name"]: s["type"] for s in version.input_schema}
        assert kinds == {"age": "number", "income": "number", "tenure_months": "number",
                         "plan": "category", "region": "category"}  # fmt: skip
        assert 0.5 < version.metrics["accuracy"] <= 1 and version.accuracy > 0.5
        assert set(version.reference_profile["features"]) == set(kinds)
        assert version.provenance["format"] == "skops"
        assert version.provenance["filename"] == "churn.skops"
        assert catalog.get_model(session, "churn").description == "who leaves"
        answer = serves(db_settings, version)[0]
        assert answer.prediction in version.classes and answer.confidence is not None
        # Compiled in the checking process, and the compiled model matched.
        assert version.runtime == "onnx", version.runtime_reason
        assert version.compile_check["mismatched_classes"] == 0
        scorer = registry.load_scorer(db_settings.for_model("churn"), version)
        assert scorer.runtime == "onnx"


def test_a_joblib_regressor_registers_only_when_pickle_is_allowed(
    session_factory, db_settings, churn_frame, tmp_path
):
    reference = tmp_path / "prices.parquet"
    churn_frame[["age", "tenure_months", *CATEGORIES, "income"]].to_parquet(reference)
    artifact = tmp_path / "income.joblib"
    joblib.dump(regressor(churn_frame), artifact)
    with session_scope(session_factory) as session:
        with pytest.raises(InvalidInputError, match="loading one runs any code"):
            register(session, db_settings, "income", artifact, reference,
                     target="income")  # fmt: skip
        assert catalog.find_model(session, "income") is None
        version = register(session, db_settings, "income", artifact, reference,
                           target="income", allow_pickle=True).version  # fmt: skip
        assert version.task == "regression" and version.classes == []
        assert version.metrics["mae"] >= 0 and version.metrics["r2"] > 0.5
        assert version.reference_profile["predictions"]["type"] == "number"
        answer = serves(db_settings, version)[0]
        assert isinstance(answer.prediction, float) and answer.confidence is None


@ON_SQLITE
def test_a_plain_pickle_needs_the_flag_too(
    session_factory, db_settings, churn_frame, reference, tmp_path
):
    artifact = tmp_path / "model.pkl"
    artifact.write_bytes(pickle.dumps(classifier(churn_frame)))
    with session_scope(session_factory) as session:
        with pytest.raises(InvalidInputError, match="allow pickle explicitly"):
            register(session, db_settings, "plain", artifact, reference)
        assert register(session, db_settings, "plain", artifact, reference,
                        allow_pickle=True).version.version == 1  # fmt: skip


@ON_SQLITE
def test_an_untrusted_type_in_a_skops_file_is_named_unless_trusted(
    session_factory, db_settings, churn_frame, reference, tmp_path
):
    pipeline = make_pipeline(Doubler(), LogisticRegression(max_iter=500))
    pipeline.fit(churn_frame[NUMBERS], churn_frame["churned"])
    churn_frame[[*NUMBERS, "churned"]].to_csv(reference, index=False)  # its features
    artifact = tmp_path / "custom.skops"
    sio.dump(pipeline, artifact)
    with session_scope(session_factory) as session:
        with pytest.raises(UnprocessableDataError) as refused:
            register(session, db_settings, "custom", artifact, reference)
        assert "tests.models.user_code.Doubler" in refused.value.message
        assert refused.value.details["types"] == ["tests.models.user_code.Doubler"]
        assert catalog.find_model(session, "custom") is None
        trusted = ("tests.models.user_code.Doubler",)
        version = register(session, db_settings, "custom", artifact, reference,
                           trusted_types=trusted).version  # fmt: skip
        assert version.provenance["trusted_types"] == ["tests.models.user_code.Doubler"]
        assert version.feature_names == NUMBERS  # what the model was fitted on
        # skl2onnx does not know the user's own transformer: scikit-learn serves
        # it, and the version says why.
        assert version.runtime == "sklearn" and version.onnx_path is None
        assert "skl2onnx cannot convert" in version.runtime_reason
        assert "Doubler" in version.runtime_reason
        scorer = registry.load_scorer(db_settings.for_model("custom"), version)
        assert scorer.runtime == "sklearn"


@ON_SQLITE
@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        ("no_predict", UnprocessableDataError, "which has no predict method"),
        ("text", InvalidInputError, "is not a model file"),
        ("zip", UnprocessableDataError, "not a skops file"),
        ("no_target", UnprocessableDataError, "the reference has no target column"),
        (
            "wrong_features",
            UnprocessableDataError,
            "predicting on the reference failed",
        ),
    ],
)
def test_refusals_say_why_and_register_nothing(
    session_factory, db_settings, churn_frame, reference, tmp_path, make, error, words
):
    artifact = tmp_path / "model.skops"
    if make == "no_predict":
        sio.dump(StandardScaler().fit(churn_frame[NUMBERS]), artifact)
    elif make == "text":
        artifact = tmp_path / "model.txt"
        artifact.write_text("this is not a model\n")
    elif make == "zip":
        with zipfile.ZipFile(artifact, "w") as archive:
            archive.writestr("readme.txt", "hello")
    else:
        sio.dump(classifier(churn_frame), artifact)
    if make == "no_target":
        reference.write_text(reference.read_text().replace("churned", "label"))
    if make == "wrong_features":  # fitted without names on 2 columns; it gets 5
        model = LogisticRegression().fit(np.random.default_rng(0).normal(size=(50, 2)),
                                         np.arange(50) % 2)  # fmt: skip
        sio.dump(model, artifact)
    with session_scope(session_factory) as session:
        with pytest.raises(error, match=words):
            register(session, db_settings, "refused", artifact, reference)
        assert catalog.find_model(session, "refused") is None


@ON_SQLITE
def test_a_file_that_hangs_or_eats_memory_is_stopped_by_the_limits(
    session_factory, db_settings, reference, tmp_path
):
    # The time limit is short for the file that hangs, and generous for the one
    # that eats memory (so a busy machine's slow imports cannot pass for it).
    hurried = db_settings.with_overrides(register_timeout_seconds=3)
    capped = db_settings.with_overrides(register_timeout_seconds=120,
                                        register_memory_mb=1024)  # fmt: skip
    hangs, hogs = tmp_path / "hangs.pkl", tmp_path / "hogs.pkl"
    hangs.write_bytes(pickle.dumps(SleepsWhenLoaded()))
    hogs.write_bytes(pickle.dumps(EatsMemoryWhenLoaded()))
    with session_scope(session_factory) as session:
        with pytest.raises(UnprocessableDataError, match="longer than 3 s"):
            register(session, hurried, "hangs", hangs, reference, allow_pickle=True)
        with pytest.raises(UnprocessableDataError, match="more memory"):
            register(session, capped, "hogs", hogs, reference, allow_pickle=True)
        assert catalog.list_models(session) == []


@ON_SQLITE
def test_a_regressor_cannot_become_a_version_of_a_classifier(
    session_factory, db_settings, churn_frame, reference, tmp_path
):
    first, second = tmp_path / "a.skops", tmp_path / "b.joblib"
    sio.dump(classifier(churn_frame), first)
    joblib.dump(regressor(churn_frame), second)
    prices = tmp_path / "prices.csv"
    churn_frame[["age", "tenure_months", *CATEGORIES, "income"]].to_csv(prices)
    with session_scope(session_factory) as session:
        register(session, db_settings, "mixed", first, reference)
        with pytest.raises(ConflictError, match="is a classification model"):
            register(session, db_settings, "mixed", second, prices, target="income",
                     allow_pickle=True)  # fmt: skip
        assert len(registry.list_versions(session, db_settings.for_model("mixed"))) == 1
