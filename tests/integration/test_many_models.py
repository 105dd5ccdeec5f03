"""Many models in one API: registered over HTTP, served, labelled and measured side
by side with the default model, each behind its own routes; a classifier and a
regressor together."""

from __future__ import annotations

import io
from typing import Any

import joblib
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from services.api.app import create_app, stop_background
from tests.integration.conftest import AUTH, promote_new_version

pytestmark = pytest.mark.integration

NUMBERS = ["age", "tenure_months"]
CATEGORIES = ["plan", "region"]


def _prepare(numbers: list[str]) -> ColumnTransformer:
    return ColumnTransformer(
        [
            ("numbers", StandardScaler(), numbers),
            ("categories", OneHotEncoder(handle_unknown="ignore"), CATEGORIES),
        ]
    )


def _files(churn_frame) -> dict[str, Any]:
    """A skops classifier, a joblib regressor, and their reference CSVs."""
    features = [*NUMBERS, *CATEGORIES]
    churn = Pipeline(
        [("prepare", _prepare(NUMBERS)), ("model", LogisticRegression(max_iter=500))]
    )
    churn.fit(churn_frame[features], churn_frame["churned"])
    income = Pipeline(
        [
            ("prepare", _prepare(NUMBERS)),
            ("model", RandomForestRegressor(10, max_depth=6, random_state=0)),
        ]
    )
    income.fit(churn_frame[features], churn_frame["income"])
    joblib_file = io.BytesIO()
    joblib.dump(income, joblib_file)
    return {
        "churn": sio.dumps(churn),
        "churn_reference": churn_frame[[*features, "churned"]].to_csv(index=False),
        "income": joblib_file.getvalue(),
        "income_reference": churn_frame[[*features, "income"]].to_csv(index=False),
    }


def _register(client, name, artifact, reference, target, **fields):
    form = {
        "name": name,
        "target": target,
        "artifact": (io.BytesIO(artifact), f"{name}.model"),
        "reference": (io.BytesIO(reference.encode()), "reference.csv"),
        **{k: str(v).lower() for k, v in fields.items()},
    }
    return client.post(
        "/models", data=form, headers=AUTH, content_type="multipart/form-data"
    )


@pytest.fixture
def app(serving_settings, churn_frame):
    """The default model (trained here) and nothing else yet; pickle allowed."""
    promote_new_version(serving_settings, churn_frame)
    app = create_app(serving_settings.with_overrides(allow_pickle=True))
    app.extensions["model_cache"].refresh()
    yield app
    stop_background(app)


def test_two_registered_models_serve_beside_the_default_one(app, churn_frame):
    client, files = app.test_client(), _files(churn_frame)
    created = _register(
        client,
        "churn",
        files["churn"],
        files["churn_reference"],
        "churned",
        description="who leaves",
    )
    assert created.status_code == 201, created.json
    assert created.headers["Location"] == "/models/churn/versions/1"
    body = created.json
    assert (body["name"], body["version"], body["task"], body["promoted"]) == (
        "churn",
        1,
        "classification",
        True,
    )
    assert [s["name"] for s in body["input_schema"]] == [*NUMBERS, *CATEGORIES]
    income = _register(
        client,
        "income",
        files["income"],
        files["income_reference"],
        "income",
        allow_pickle=True,
    )
    assert income.status_code == 201, income.json
    assert income.json["task"] == "regression" and income.json["metrics"]["r2"] > 0

    listing = client.get("/models").json
    assert listing["default_model"] == "default"
    assert [
        (m["name"], m["task"], m["champion_version"]) for m in listing["models"]
    ] == [
        ("churn", "classification", 1),
        ("default", "classification", 1),
        ("income", "regression", 1),
    ]
    row = {"age": 40, "tenure_months": 12, "plan": "basic", "region": "north"}
    churn = client.post("/models/churn/predict", json={"features": row})
    assert churn.status_code == 200, churn.json
    assert churn.headers["X-Model-Name"] == "churn"
    assert churn.json["model"] == "churn" and churn.json["prediction"] in (0, 1)
    priced = client.post("/models/income/predict", json={"instances": [row, row]})
    answers = priced.json["predictions"]
    assert isinstance(answers[0]["prediction"], float)
    assert answers[0]["confidence"] is None and answers[0]["probabilities"] is None
    wrong = client.post("/models/income/predict", json={"features": {"age": 1}})
    assert wrong.status_code == 400  # its own schema: three features are missing
    status = client.get("/models/income").json
    assert status["task"] == "regression" and status["accuracy"] is None
    assert status["provenance"]["format"] == "pickle"

    # Labels: a class for the classifier, a number for the regressor.
    labels = [
        {"prediction_id": churn.json["prediction_id"], "label": 1},
        {"prediction_id": answers[0]["prediction_id"], "label": 51000.5},
        {"prediction_id": answers[1]["prediction_id"], "label": 48000},
    ]
    app.extensions["prediction_log"].flush()  # checked against their rows
    recorded = client.post("/feedback", json=labels)
    assert recorded.status_code == 200, recorded.json
    assert [r["joined"] for r in recorded.json["results"]] == [True, True, True]
    refused = client.post(
        "/feedback",
        json={"prediction_id": answers[0]["prediction_id"], "label": "expensive"},
    )
    assert refused.status_code == 400
    assert refused.json["error"]["details"]["problems"][0]["code"] == "not_a_number"
    app.extensions["prediction_log"].flush()
    metrics = client.get("/models/income/metrics").json
    assert (metrics["model"], metrics["task"]) == ("income", "regression")
    assert metrics["prediction_count"] == 2 and metrics["labeled_count"] == 2
    assert metrics["mae"] > 0 and metrics["rmse"] >= metrics["mae"]
    assert metrics["accuracy"] is None
    churn_metrics = client.get("/models/churn/metrics").json
    assert churn_metrics["prediction_count"] == 1 and churn_metrics["mae"] is None
    assert client.get("/metrics").json["prediction_count"] == 0  # the default's

    document = client.get("/openapi.json").json
    own = document["components"]["schemas"]["PredictRequest_income"]
    assert own["oneOf"][0]["properties"]["features"]["required"] == [
        *NUMBERS,
        *CATEGORIES,
    ]
    assert "/models/income/predict" in document["paths"]


def test_an_unknown_model_is_404_naming_the_known_ones(app):
    client = app.test_client()
    for method, path in (
        ("post", "/models/fraud/predict"),
        ("get", "/models/fraud"),
        ("get", "/models/fraud/metrics"),
        ("post", "/models/fraud/retrain"),
        ("get", "/jobs?model=fraud"),
        ("get", "/alerts?model=fraud"),
    ):
        response = client.open(
            path,
            method=method.upper(),
            headers=AUTH,
            json={"features": {}} if "predict" in path else None,
        )
        assert response.status_code == 404, (path, response.json)
        assert response.json["error"]["message"] == (
            "no model named 'fraud'; models are default"
        ), path


def test_pickle_over_http_needs_the_operator_s_permission(
    serving_settings, churn_frame, make_app
):
    promote_new_version(serving_settings, churn_frame)
    client = make_app(serving_settings).test_client()  # allow_pickle off
    files = _files(churn_frame)
    refused = _register(
        client,
        "income",
        files["income"],
        files["income_reference"],
        "income",
        allow_pickle=True,
    )
    assert refused.status_code == 403
    assert "MODELOPS_ALLOW_PICKLE" in refused.json["error"]["message"]
    unflagged = _register(
        client, "income", files["income"], files["income_reference"], "income"
    )
    assert unflagged.status_code == 400
    assert "allow pickle explicitly" in unflagged.json["error"]["message"]
    assert [m["name"] for m in client.get("/models").json["models"]] == ["default"]
    keyless = client.post(
        "/models", data={"name": "x"}, content_type="multipart/form-data"
    )
    assert keyless.status_code == 401


def test_retrain_and_promotion_act_on_their_own_model_only(app, churn_frame):
    client, files = app.test_client(), _files(churn_frame)
    _register(client, "churn", files["churn"], files["churn_reference"], "churned")
    _register(client, "churn", files["churn"], files["churn_reference"], "churned")
    promoted = client.post("/models/churn/versions/2/promote", headers=AUTH)
    assert promoted.json == {"version": 2, "generation": 2, "previous_version": 1}
    assert client.get("/model/status").json["generation"] == 1  # default untouched
    back = client.post("/models/churn/rollback", headers=AUTH)
    assert back.json["version"] == 1
    versions = client.get("/models/churn/versions").json
    assert versions["model"] == "churn" and versions["champion_version"] == 1
    # A registered model without labels has nothing to retrain on: 422, no job.
    retrain = client.post("/models/churn/retrain", headers=AUTH, json={})
    assert retrain.status_code == 422, retrain.json
    assert "0 labelled predictions since" in retrain.json["error"]["message"]
    assert client.get("/jobs?model=churn").json["total"] == 0
