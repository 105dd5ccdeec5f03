"""What a user reads when a call goes wrong: the cause in plain words, every time."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder

from services.api import job_submission
from tests.integration.conftest import AUTH

pytestmark = pytest.mark.integration


@pytest.fixture
def queued(monkeypatch):
    published: list[int] = []
    monkeypatch.setattr(
        job_submission,
        "enqueue",
        lambda app, name, job_id: published.append(job_id) or "t-1",
    )
    return published


def _chunked(client, path: str, body: bytes):
    """POST `body` as a WSGI server hands over a chunked request: no Content-Length, the
    input terminated by the server."""
    environ = EnvironBuilder(
        path=path,
        method="POST",
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
    ).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    return client.open(environ)


def test_a_chunked_body_over_the_limit_is_413_and_one_under_it_is_read(
    serving_settings, serving_app, row
):
    client = serving_app.test_client()
    limit = serving_settings.max_request_bytes
    padding = "x" * limit
    over = _chunked(
        client, "/predict", json.dumps({"features": {"a": padding}}).encode()
    )
    assert over.status_code == 413, over.json
    assert over.json["error"]["code"] == "request_entity_too_large"
    assert str(limit) in over.json["error"]["message"]
    under = _chunked(client, "/predict", json.dumps({"features": row}).encode())
    assert under.status_code == 200, under.json


def test_malformed_json_names_its_place_without_doubled_words(serving):
    response = serving.post(
        "/predict", data='{"features": {"age": "4', content_type="application/json"
    )
    message = response.json["error"]["message"]
    assert response.status_code == 400
    assert message == (
        "malformed JSON: Unterminated string starting at line 1 column 22"
    )


def test_the_415_of_batch_scoring_names_both_bodies_it_takes(serving, queued):
    response = serving.post(
        "/jobs/batch-score", data="a,b\n1,2\n", headers={**AUTH,
                                                        "Content-Type": "text/csv"}
    )  # fmt: skip
    assert response.status_code == 415
    message = response.json["error"]["message"]
    assert "application/json" in message and "multipart/form-data" in message
    assert "'file'" in message and "'text/csv'" in message
    assert queued == []


def test_a_built_in_dataset_is_scored_by_name(serving, serving_settings, queued):
    response = serving.post(
        "/jobs/batch-score", json={"dataset": "synthetic"}, headers=AUTH
    )
    assert response.status_code == 202, response.json
    source = Path(serving_settings.data_dir) / response.json["job"]["params"]["source"]
    header = source.read_text().splitlines()[0].split(",")
    assert {"age", "plan", "region"} <= set(header)
    assert len(source.read_text().splitlines()) == serving_settings.demo_rows + 1
    again = serving.post(
        "/jobs/batch-score", json={"dataset": "synthetic"}, headers=AUTH
    )
    assert (
        again.json["job"]["params"]["source"]
        == response.json["job"]["params"]["source"]
    )  # the same rows, written once
    assert queued == [response.json["job"]["id"], again.json["job"]["id"]]


def test_an_unknown_dataset_says_where_it_looked_and_what_is_there(
    serving, serving_settings, queued
):
    data = Path(serving_settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    (data / "march.csv").write_text("a\n1\n")
    response = serving.post(
        "/jobs/batch-score", json={"dataset": "april.csv"}, headers=AUTH
    )
    assert response.status_code == 404
    message = response.json["error"]["message"]
    assert message == (
        f"no file named 'april.csv' in the data directory {data} (files there: "
        "march.csv; built-in datasets: iris, wine, breast_cancer, synthetic)"
    )


def test_feedback_echoes_each_label_as_it_was_sent(serving, row):
    ids = [
        serving.post("/predict", json={"features": row}).json["prediction_id"]
        for _ in range(2)
    ]
    response = serving.post(
        "/feedback",
        json=[{"prediction_id": ids[0], "label": 1},
              {"prediction_id": ids[1], "label": "0"}],
    )  # fmt: skip
    assert response.status_code == 200, response.json
    assert [r["label"] for r in response.json["results"]] == [1, "0"]


def test_prometheus_names_routes_as_they_are_written(serving):
    serving.get("/jobs/12345")
    text = serving.get("/metrics/prometheus").data.decode()
    assert 'endpoint="/jobs/<job_id>"' in text
    assert "int(max=" not in text


def test_a_binary_upload_is_refused_as_not_utf8_text_and_nothing_is_kept(
    serving, serving_settings, queued
):
    photo = bytes(range(256)) * 64
    response = serving.post(
        "/jobs/batch-score",
        headers=AUTH,
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(photo), "photo.csv")},
    )
    assert response.status_code == 400
    assert response.json["error"]["message"].startswith(
        "the upload is not a UTF-8 CSV (it holds the byte 0x80"
    )
    uploads = Path(serving_settings.data_dir) / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())
    assert queued == []
