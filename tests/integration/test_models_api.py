from __future__ import annotations

import pytest

from tests.integration.conftest import API_KEY, AUTH, promote_new_version

pytestmark = pytest.mark.integration

MUTATING = [
    ("post", "/model/rollback"),
    ("post", "/models/1/promote"),
]
PREDICT_PATHS = [("post", "/predict"), ("post", "/feedback")]


def test_models_list_and_detail(serving, serving_settings, churn_frame):
    promote_new_version(serving_settings, churn_frame)  # version 2 becomes champion
    models = serving.get("/models").json
    assert models["default_model"] == "default"
    [model] = models["models"]
    assert (model["name"], model["task"], model["champion_version"]) == (
        "default",
        "classification",
        2,
    )
    assert model["versions"] == 2 and model["loaded"] is True
    listing = serving.get("/models/default/versions").json
    assert listing["champion_version"] == 2
    assert [(m["version"], m["state"]) for m in listing["models"]] == [
        (2, "champion"),
        (1, "retired"),
    ]
    one = serving.get("/models/1").json  # the default model's, as before
    assert one == serving.get("/models/default/versions/1").json
    assert (
        one["model_id"] == "default:1" and one["metrics"]["f1_score"] == one["f1_score"]
    )
    missing = serving.get("/models/99")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "model_not_found"
    unknown = serving.get("/models/fraud/versions")
    assert unknown.status_code == 404
    assert unknown.json["error"]["message"] == (
        "no model named 'fraud'; models are default"
    )
    assert unknown.json["error"]["details"]["known"] == ["default"]


def test_promote_and_rollback_with_the_key(serving, serving_settings, churn_frame):
    promote_new_version(serving_settings, churn_frame)
    back = serving.post(
        "/models/1/promote", json={"reason": "v2 looks off"}, headers=AUTH
    )
    assert back.status_code == 200
    assert back.json == {"version": 1, "generation": 3, "previous_version": 2}
    status = serving.get("/model/status").json
    assert (status["version"], status["generation"]) == (1, 3)
    undo = serving.post("/model/rollback", headers=AUTH)
    assert undo.json == {"version": 2, "generation": 4, "previous_version": 1}
    again = serving.post("/models/2/promote", headers=AUTH)
    assert (
        again.status_code == 409
        and "already the champion" in again.json["error"]["message"]
    )


def test_rollback_without_history_is_409(serving):
    response = serving.post("/model/rollback", headers=AUTH)
    assert response.status_code == 409
    assert response.json["error"]["message"] == (
        "model 'default' has no previous champion to roll back to"
    )


@pytest.mark.parametrize(("method", "path"), MUTATING)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"X-API-Key": "nope"},
        {"Authorization": API_KEY},
    ],
    ids=["none", "wrong-bearer", "wrong-header", "no-bearer-prefix"],
)
def test_mutating_endpoints_refuse_missing_or_wrong_key(serving, method, path, headers):
    response = getattr(serving, method)(path, headers=headers)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path"), MUTATING)
def test_both_key_headers_are_accepted(serving, method, path):
    for headers in (AUTH, {"X-API-Key": API_KEY}):
        response = getattr(serving, method)(path, headers=headers)
        assert response.status_code != 401


@pytest.mark.parametrize(("method", "path"), PREDICT_PATHS)
def test_predict_and_feedback_need_the_key_only_when_configured(
    serving_settings, churn_frame, row, method, path, make_app
):
    promote_new_version(serving_settings, churn_frame)
    body = (
        {"features": row}
        if path == "/predict"
        else {"prediction_id": "0" * 32, "label": 1}
    )
    open_app = make_app(serving_settings)
    open_app.extensions["model_cache"].refresh()
    assert getattr(open_app.test_client(), method)(path, json=body).status_code == 200
    closed = make_app(serving_settings.with_overrides(predict_auth=True))
    closed.extensions["model_cache"].refresh()
    client = closed.test_client()
    assert getattr(client, method)(path, json=body).status_code == 401
    assert getattr(client, method)(path, json=body, headers=AUTH).status_code == 200


def test_a_server_without_a_key_refuses_every_mutation(client):
    response = client.post("/model/rollback", headers={"Authorization": "Bearer x"})
    assert response.status_code == 401
    assert "no API key configured" in response.json["error"]["message"]
