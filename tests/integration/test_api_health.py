from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.integration.conftest import promote_new_version

pytestmark = pytest.mark.integration

STATUS_FIELDS = {
    "model_id",
    "version",
    "created_at",
    "accuracy",
    "f1_score",
    "training_data_size",
    "feature_names",
    "model_type",
    "sha256",
    "generation",
    "loaded_at",
    "input_schema",
}


def test_livez_answers_without_dependencies(client):
    response = client.get("/livez")
    assert response.status_code == 200 and response.json == {"status": "alive"}


def test_readyz_is_503_with_every_reason_when_nothing_is_there(client):
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    checks = response.json["checks"]
    assert checks["database"] == "ok"
    assert checks["broker"].startswith("broker unreachable")
    assert checks["model"] == "no version of model 'default' has been promoted yet"


def test_readyz_is_200_with_redis_database_and_model(
    api_settings, redis_url, churn_frame, make_app
):
    settings = api_settings.with_overrides(redis_url=redis_url)
    promote_new_version(settings, churn_frame)
    client = make_app(settings).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "model": "ok"},
        "pid": os.getpid(),  # the process that answered: here, the test's
        "model_version": 1,
        "rollouts": {},  # no rollout this process follows
    }


def test_model_status_is_503_before_any_model(client):
    response = client.get("/model/status")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.json["error"]["code"] == "model_not_ready"


def test_model_status_describes_the_champion(client, api_settings, churn_frame):
    promote_new_version(api_settings, churn_frame)
    client.get("/readyz")  # loads the model into this process
    response = client.get("/model/status")
    assert response.status_code == 200
    body = response.json
    assert set(body) >= STATUS_FIELDS
    assert response.headers["X-Model-Version"] == "1"
    assert (body["version"], body["generation"], body["state"]) == (1, 1, "champion")
    assert body["loaded_at"] is not None
    assert body["input_schema"][0] == {
        "name": "age",
        "type": "number",
        "min": body["input_schema"][0]["min"],
        "max": body["input_schema"][0]["max"],
        "categories": None,
    }
    plan = next(f for f in body["input_schema"] if f["name"] == "plan")
    assert plan["type"] == "category" and set(plan["categories"]) == {
        "basic",
        "standard",
        "premium",
    }


@pytest.mark.parametrize("suffix", ["joblib", "onnx"])
def test_damaged_artifact_is_reported_not_served(
    client, api_settings, churn_frame, suffix
):
    """Either file of a version (its pipeline, or the compiled model that serves
    it) damaged: refused, never served."""
    promote_new_version(api_settings, churn_frame)
    artifact = next(Path(api_settings.artifact_dir).rglob(f"*.{suffix}"))
    artifact.write_bytes(b"garbage")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "refusing to load" in response.json["checks"]["model"]


def test_unknown_path_and_method_use_the_json_error_shape(client):
    missing = client.get("/no/such/thing")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"
    wrong = client.post("/model/status")
    assert wrong.status_code == 405
    assert wrong.json["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]


def test_dashboard_page_is_served_with_a_strict_policy(client):
    response = client.get("/")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    page = response.data.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, re.S)
    assert scripts and all(
        "src=" in attrs and not body.strip() for attrs, body in scripts
    )
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", page), "an inline event handler"
    for path in ("/dashboard/static/js/app.js", "/dashboard/static/dashboard.css"):
        with client.get(path) as asset:
            assert asset.status_code == 200, path
    with client.get("/dashboard/vendor/chart.umd.js") as chart:
        assert chart.status_code == 200 and b"Chart" in chart.data[:2000]
    assert client.get("/dashboard/vendor/evil.js").status_code == 404
