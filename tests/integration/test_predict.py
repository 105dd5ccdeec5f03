from __future__ import annotations

import json
import time

import pytest

from services.api.model_cache import LoadedModel

pytestmark = pytest.mark.integration


def _problems(response):
    return {
        (p["field"], p["code"]) for p in response.json["error"]["details"]["problems"]
    }


def test_single_prediction_answers_every_field(serving, row):
    response = serving.post("/predict", json={"features": row})
    assert response.status_code == 200
    body = response.json
    assert set(body) == {
        "prediction",
        "confidence",
        "probabilities",
        "prediction_id",
        "model",
        "model_version",
        "data_quality",
        "arm",
    }
    assert response.headers["X-Model-Version"] == "1" and body["model_version"] == 1
    assert response.headers["X-Model-Arm"] == body["arm"] == "champion"
    assert body["prediction"] in (0, 1)
    assert body["confidence"] == max(body["probabilities"].values())
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)
    assert len(body["prediction_id"]) == 32 and body["data_quality"] == []


def test_prediction_ids_are_unique_and_ordered_by_when_they_were_made(serving, row):
    """Time-ordered ids (UUIDv7): the log's unique index takes new rows at its end."""
    ids = []
    for _ in range(3):
        batch = serving.post("/predict", json={"instances": [row] * 50}).json
        ids.extend(p["prediction_id"] for p in batch["predictions"])
        time.sleep(0.002)  # ids of one millisecond are unique, not ordered
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and i[12] == "7" for i in ids)  # version 7
    firsts = [ids[0], ids[50], ids[100]]
    assert firsts == sorted(firsts)


def test_batch_prediction_matches_single_predictions(serving, row):
    other = {**row, "support_calls": 6, "plan": "premium"}
    batch = serving.post("/predict", json={"instances": [row, other]}).json
    assert batch["model_version"] == 1 and len(batch["predictions"]) == 2
    for instance, answer in zip([row, other], batch["predictions"], strict=True):
        single = serving.post("/predict", json={"features": instance}).json
        assert answer["probabilities"] == pytest.approx(single["probabilities"])
    ids = {p["prediction_id"] for p in batch["predictions"]}
    assert len(ids) == 2


def test_every_problem_is_listed_at_once_with_its_field(serving, row):
    body = {"instances": [
        {**row, "age": "forty", "income": [1, 2], "colour": "red"},
        {k: v for k, v in row.items() if k != "plan"},
        "not an object",
        {**row, "plan": 3, "region": True},
    ]}  # fmt: skip
    response = serving.post("/predict", json=body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_input"
    assert _problems(response) == {
        ("instances[0].age", "wrong_type"), ("instances[0].income", "wrong_type"),
        ("instances[0].colour", "unknown_feature"),
        ("instances[1].plan", "missing_feature"),
        ("instances[2]", "not_an_object"), ("instances[3].plan", "wrong_type"),
        ("instances[3].region", "wrong_type"),
    }  # fmt: skip


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e309"])
def test_non_finite_numbers_are_refused_by_field(serving, row, literal):
    text = json.dumps({"features": row}).replace('"age": 40', f'"age": {literal}')
    response = serving.post("/predict", data=text, content_type="application/json")
    assert response.status_code == 400
    assert _problems(response) == {("features.age", "not_finite")}


def test_text_postgresql_cannot_store_is_refused_by_field(serving, row):
    """A NUL character: PostgreSQL keeps none in text or JSON, so the row could never
    be logged (and a label never stored); refused up front, named."""
    response = serving.post("/predict", json={"features": {**row, "plan": "a\x00b"}})
    assert response.status_code == 400
    assert _problems(response) == {("features.plan", "invalid_character")}
    answer = serving.post("/predict", json={"features": row}).json
    label = {"prediction_id": answer["prediction_id"], "label": "a\x00b"}
    assert serving.post("/feedback", json=label).status_code == 400


def test_empty_oversized_and_ambiguous_bodies_are_refused(
    serving_settings, churn_frame, row, make_app
):
    from tests.integration.conftest import promote_new_version

    promote_new_version(serving_settings, churn_frame)
    app = make_app(serving_settings.with_overrides(max_batch_instances=3))
    app.extensions["model_cache"].refresh()
    client = app.test_client()
    assert _problems(client.post("/predict", json={"instances": []})) == {
        ("instances", "too_short")
    }
    assert _problems(client.post("/predict", json={"instances": [row] * 4})) == {
        ("instances", "too_long")
    }
    both = client.post("/predict", json={"features": row, "instances": [row]})
    assert both.status_code == 400 and "exactly one" in json.dumps(both.json)
    assert client.post("/predict", json={"feature": row}).status_code == 400


def test_body_over_the_limit_gets_413_and_non_json_gets_415(
    serving_settings, churn_frame, row, make_app
):
    from tests.integration.conftest import promote_new_version

    promote_new_version(serving_settings, churn_frame)
    client = make_app(
        serving_settings.with_overrides(max_request_bytes=500)
    ).test_client()
    big = client.post("/predict", json={"instances": [row] * 10})
    assert (
        big.status_code == 413
        and big.json["error"]["code"] == "request_entity_too_large"
    )
    wrong_type = client.post("/predict", data="age=3", content_type="text/plain")
    assert wrong_type.status_code == 415
    assert "Content-Type: application/json" in wrong_type.json["error"]["message"]
    broken = client.post(
        "/predict", data='{"features": {', content_type="application/json"
    )
    assert broken.status_code == 400
    assert broken.json["error"]["message"].startswith("malformed JSON")


def test_unseen_category_and_out_of_range_are_answered_and_counted(serving_app, row):
    client = serving_app.test_client()
    odd = {**row, "region": "atlantis", "age": 150, "income": None}
    response = client.post("/predict", json={"features": odd})
    assert response.status_code == 200
    assert response.json["data_quality"] == [
        "out_of_range:age",
        "missing:income",
        "unseen_category:region",
    ]
    counts = serving_app.extensions["predictor"].quality_counts
    assert (counts["out_of_range"], counts["missing"], counts["unseen_category"]) == (
        1,
        1,
        1,
    )


def test_no_model_gives_503_with_retry_after(client, row):
    response = client.post("/predict", json={"features": row})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json["error"]["code"] == "model_not_ready"


class SlowScorer:
    """A real model that takes its time, like an overloaded or huge one: served by
    scikit-learn, so it is batched (a compiled model scores in the request thread)."""

    def __init__(self, scorer, seconds):
        self.scorer, self.seconds = scorer, seconds
        self.runtime, self.reason = "sklearn", scorer.reason
        self.gives_probabilities = scorer.gives_probabilities

    def score_rows(self, schema, rows):
        time.sleep(self.seconds)
        return self.scorer.score_rows(schema, rows)


def test_a_prediction_over_its_budget_gets_408(
    serving_settings, churn_frame, row, make_app
):
    from tests.integration.conftest import promote_new_version

    promote_new_version(serving_settings, churn_frame)
    app = make_app(serving_settings.with_overrides(predict_timeout_ms=100))
    cache = app.extensions["model_cache"]
    loaded = cache.refresh()
    fields = {**loaded.__dict__, "scorer": SlowScorer(loaded.scorer, 1.0)}
    cache.put(LoadedModel(**fields))
    client = app.test_client()
    started = time.perf_counter()
    response = client.post("/predict", json={"features": row})
    elapsed = time.perf_counter() - started
    assert response.status_code == 408
    assert response.json["error"] == {
        "code": "timeout",
        "message": "prediction took longer than 100 ms",
        "details": {"timeout_ms": 100},
    }
    assert elapsed < 0.8  # answered at the budget, not when the model finished
    cache.put(loaded)
    time.sleep(1.0)  # the slow batch drains
    assert client.post("/predict", json={"features": row}).status_code == 200


def test_concurrent_requests_are_predicted_together(serving_app, row):
    from concurrent.futures import ThreadPoolExecutor

    cache = serving_app.extensions["model_cache"]
    loaded = cache.current
    # Each model call takes 0.2 s, so requests arriving meanwhile queue up.
    cache.put(
        LoadedModel(**{**loaded.__dict__, "scorer": SlowScorer(loaded.scorer, 0.2)})
    )
    client = serving_app.test_client()
    batcher = serving_app.extensions["predictor"].batcher
    with ThreadPoolExecutor(20) as pool:
        answers = list(
            pool.map(
                lambda _: client.post("/predict", json={"features": row}), range(20)
            )
        )
    assert [a.status_code for a in answers] == [200] * 20
    assert batcher.rows == 20
    assert batcher.batches <= 3  # not 20 model calls
    # Same row, same answer, whatever the batch: the same class, and the same
    # probabilities to float32's precision (ONNX Runtime's kernels for one row and
    # for many may round the last float32 digit apart).
    assert len({a.json["prediction"] for a in answers}) == 1
    first = answers[0].json["probabilities"]
    for answer in answers:
        assert answer.json["probabilities"] == pytest.approx(first, abs=1e-6)


def test_a_compiled_model_scores_in_the_request_thread(serving_app, row):
    """ONNX Runtime's call costs less than handing the row to the batch thread and
    back: no batch is formed, and each answer is the one a batch of one gives."""
    from concurrent.futures import ThreadPoolExecutor

    assert serving_app.extensions["model_cache"].current.runtime == "onnx"
    client = serving_app.test_client()
    batcher = serving_app.extensions["predictor"].batcher
    alone = client.post("/predict", json={"features": row}).json
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(
                lambda _: client.post("/predict", json={"features": row}), range(16)
            )
        )
    assert [a.status_code for a in answers] == [200] * 16
    assert batcher.batches == 0 and batcher.rows == 0
    for answer in answers:
        assert answer.json["prediction"] == alone["prediction"]
        assert answer.json["probabilities"] == alone["probabilities"]


class BrokenScorer(SlowScorer):
    """A model that fails on valid input (a bug in a custom transformer, say)."""

    def score_rows(self, schema, rows):
        raise ValueError("cannot handle this row")


@pytest.mark.parametrize("runtime", ["onnx", "sklearn"])
def test_a_model_failing_on_valid_input_gets_422_and_the_next_request_is_answered(
    serving_app, row, runtime
):
    cache = serving_app.extensions["model_cache"]
    loaded = cache.current
    broken = BrokenScorer(loaded.scorer, 0)
    broken.runtime = runtime  # in the request thread, or in a batch
    cache.put(LoadedModel(**{**loaded.__dict__, "scorer": broken}))
    client = serving_app.test_client()
    answer = client.post("/predict", json={"features": row})
    assert answer.status_code == 422
    assert answer.json["error"]["message"] == "the model could not score this input"
    cache.put(loaded)
    assert client.post("/predict", json={"features": row}).status_code == 200


def test_metrics_count_answers_failures_and_labels(serving_app, row):
    client = serving_app.test_client()
    ids = [
        client.post("/predict", json={"features": row}).json["prediction_id"]
        for _ in range(4)
    ]
    client.post("/predict", json={"features": {**row, "age": "old"}})  # a 400
    client.post("/feedback", json=[{"prediction_id": i, "label": 1} for i in ids])
    serving_app.extensions["prediction_log"].flush()
    m = client.get("/metrics").json
    assert (m["prediction_count"], m["request_count"]) == (4, 5)
    assert m["error_rate"] == pytest.approx(0.2)
    assert m["labeled_count"] == 4 and m["label_coverage"] == 1.0
    assert m["latency_ms"]["p99"] > 0
    assert client.get("/metrics?window_minutes=0").status_code == 400
    history = client.get("/metrics/history?hours=1").json["snapshots"]
    assert sum(h["request_count"] for h in history) == 5  # from the rollups
    assert sum(h["labeled_count"] for h in history) == 4
    one = client.get("/metrics?model_version=1").json
    assert one["model_version"] == 1 and one["prediction_count"] == 4
    assert m["model_version"] is None
    assert client.get("/metrics?model_version=9").status_code == 404
    bad = client.get("/metrics?model_version=1.5")
    assert bad.status_code == 400
    assert bad.json["error"]["details"]["problems"][0]["field"] == "model_version"


def test_drift_endpoints_before_and_after_a_check(serving_app, serving_settings):
    from common.monitoring.drift_checks import run_drift_check
    from common.storage.db import make_engine, make_session_factory, session_scope

    client = serving_app.test_client()
    missing = client.get("/drift")
    assert (
        missing.status_code == 404
        and "no drift check" in missing.json["error"]["message"]
    )
    engine = make_engine(serving_settings)
    with session_scope(make_session_factory(engine)) as session:
        run_drift_check(session, serving_settings)
    engine.dispose()
    report = client.get("/drift").json
    assert report["status"] == "insufficient_data" and report["model_version"] == 1
    assert [c["status"] for c in client.get("/drift/history").json["checks"]] == [
        "insufficient_data"
    ]
    assert client.get("/drift/history?limit=0").status_code == 400


def test_prometheus_exposition_parses_and_counts(serving_app, row):
    from prometheus_client.parser import text_string_to_metric_families

    client = serving_app.test_client()
    before = _prometheus_count(client, "/predict", "200")
    for _ in range(3):
        client.post("/predict", json={"features": row})
    client.post("/predict", json={"features": {}})  # a 400
    response = client.get("/metrics/prometheus")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    families = {
        f.name: f for f in text_string_to_metric_families(response.data.decode())
    }
    assert _prometheus_count(client, "/predict", "200") - before == 3
    assert families["modelops_model_version"].samples[0].value == 1
    assert {s.labels["severity"] for s in families["modelops_open_alerts"].samples} == {
        "warn",
        "critical",
    }
    assert "modelops_http_request_duration_seconds" in families


def _prometheus_count(client, endpoint, status):
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics/prometheus").data.decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "modelops_http_requests"
        for sample in family.samples
        if sample.name == "modelops_http_requests_total"
        and sample.labels["endpoint"] == endpoint
        and sample.labels["status"] == status
    )
