"""Who may read what: every operation of the OpenAPI document, called without a key,
on a loopback-only API and on one that guards its reads (MODELOPS_READ_AUTH, or an
address other machines reach)."""

from __future__ import annotations

import re

import pytest

from tests.integration.conftest import API_KEY, AUTH

pytestmark = pytest.mark.integration

ALWAYS_OPEN = {("get", "/livez"), ("get", "/readyz"), ("get", "/metrics/prometheus")}
# keyed with PREDICT_AUTH
PREDICT = {
    ("post", "/predict"),
    ("post", "/feedback"),
    ("post", "/models/{name}/predict"),
    ("post", "/models/default/predict"),
}


def _operations(client, headers=None) -> list[tuple[str, str]]:
    document = client.get("/openapi.json", headers=headers or {}).json
    return [
        (method, path)
        for path, methods in document["paths"].items()
        for method in methods
    ]


def _call(client, method: str, path: str, headers=None):
    url = re.sub(r"\{[^}]+\}", "1", path.replace("{name}", "default"))
    return client.open(url, method=method.upper(), headers=headers or {})


@pytest.fixture
def keyed_app(serving_settings, make_app, churn_frame):
    """An app whose settings a test picks: the same served model in each mode."""
    from tests.integration.conftest import promote_new_version

    promote_new_version(serving_settings, churn_frame)

    def make(**overrides):
        app = make_app(serving_settings.with_overrides(**overrides))
        app.extensions["model_cache"].refresh()
        return app.test_client()

    return make


def test_on_loopback_reads_are_open_but_writes_and_result_files_need_the_key(
    keyed_app,
):
    client = keyed_app()
    operations = _operations(client)
    assert len(operations) >= 25
    refused = {
        (method, path)
        for method, path in operations
        if _call(client, method, path).status_code == 401
    }
    writes = {(m, p) for m, p in operations if m != "get"} - PREDICT
    assert refused == writes | {("get", "/jobs/{job_id}/result")}
    document = client.get("/openapi.json").json
    documented = {
        (method, path)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if "security" in operation
    }
    assert documented == refused  # the document says which need the key


@pytest.mark.parametrize(
    "overrides",
    [{"read_auth": True}, {"api_host": "0.0.0.0"}],
    ids=["read_auth", "lan"],
)
def test_guarded_reads_need_the_key_except_the_probes_and_the_pages(
    keyed_app, overrides
):
    client = keyed_app(**overrides)
    assert client.get("/openapi.json").status_code == 401
    operations = _operations(client, AUTH)
    answers = {(m, p): _call(client, m, p).status_code for m, p in operations}
    refused = {operation for operation, status in answers.items() if status == 401}
    assert refused == set(operations) - ALWAYS_OPEN - PREDICT
    for page in ("/", "/docs"):  # no data in them: they read through the API
        assert client.get(page).status_code == 200
    for method, path in operations:
        if method == "get" and path != "/jobs/{job_id}/result":
            status = _call(client, method, path, {"X-API-Key": API_KEY}).status_code
            assert status != 401, path
    wrong = client.get("/metrics", headers={"X-API-Key": "not-the-key"})
    assert wrong.status_code == 401
    assert wrong.json["error"]["message"].startswith("wrong API key")


def test_the_probes_need_the_key_when_configured(keyed_app):
    client = keyed_app(probes_auth=True)
    for path in ("/livez", "/readyz", "/metrics/prometheus"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers=AUTH).status_code in (200, 503), path
    assert client.get("/metrics").status_code == 200  # reads stay open on loopback


def test_with_demo_mode_off_the_demo_routes_are_404_and_unlisted(keyed_app):
    client = keyed_app(demo="off")
    for method, path in (("POST", "/demo/reset"), ("POST", "/demo/drift"),
                         ("GET", "/demo/scenario")):  # fmt: skip
        response = client.open(path, method=method, headers=AUTH, json={})
        assert response.status_code == 404, path
        assert "MODELOPS_DEMO" in response.json["error"]["message"]
    assert not [p for p in client.get("/openapi.json").json["paths"] if "/demo" in p]
    page = client.get("/").data.decode()
    assert 'id="page-demo"' not in page and 'href="#demo"' not in page
    assert 'href="#demo"' in keyed_app(demo="on").get("/").data.decode()
