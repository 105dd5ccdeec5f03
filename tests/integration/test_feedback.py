from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def _predict(client, row, n=1):
    body = client.post("/predict", json={"instances": [row] * n}).json
    return [p["prediction_id"] for p in body["predictions"]]


def test_feedback_one_and_many_is_idempotent(serving, row):
    first, second, third = _predict(serving, row, 3)
    one = serving.post("/feedback", json={"prediction_id": first, "label": 0})
    assert one.status_code == 200 and one.json["results"][0]["status"] == "recorded"
    many = [
        {"prediction_id": second, "label": "1"},
        {"prediction_id": third, "label": 0},
    ]
    assert [
        r["status"] for r in serving.post("/feedback", json=many).json["results"]
    ] == ["recorded", "recorded"]
    repeat = serving.post("/feedback", json=many).json["results"]
    assert [r["status"] for r in repeat] == ["unchanged", "unchanged"]
    corrected = serving.post("/feedback", json={"prediction_id": first, "label": 1})
    assert corrected.json["results"][0] == {
        "prediction_id": first,
        "label": 1,  # echoed as sent
        "status": "updated",
        "joined": False,
    }


def test_label_outside_the_model_classes_is_400_and_nothing_is_stored(
    serving_app, serving, row
):
    (good,) = _predict(serving, row)
    (other,) = _predict(serving, row)
    serving_app.extensions["prediction_log"].flush()  # the rows say which model
    body = [
        {"prediction_id": good, "label": 1},
        {"prediction_id": other, "label": "maybe"},
    ]
    response = serving.post("/feedback", json=body)
    assert response.status_code == 400
    problem = response.json["error"]["details"]["problems"][0]
    assert problem["field"] == "[1].label" and "'maybe'" in problem["message"]
    retry = serving.post("/feedback", json=body[:1])
    assert retry.json["results"][0]["status"] == "recorded"  # the first was not kept


@pytest.mark.parametrize(
    "body",
    [
        {"prediction_id": "short", "label": 1},
        {"prediction_id": "0" * 32},
        {"prediction_id": "0" * 32, "label": 1, "extra": True},
        [],
        [{"prediction_id": "a" * 32, "label": 1}] * 1001,
    ],
)
def test_malformed_feedback_is_400(serving, body):
    response = serving.post("/feedback", json=body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_input"


def test_a_later_label_for_the_same_id_wins(serving, row):
    (prediction_id,) = _predict(serving, row)
    body = [
        {"prediction_id": prediction_id, "label": 0},
        {"prediction_id": prediction_id, "label": 1},
    ]
    results = serving.post("/feedback", json=body).json["results"]
    assert [(r["label"], r["status"]) for r in results] == [(1, "recorded")]  # as sent
