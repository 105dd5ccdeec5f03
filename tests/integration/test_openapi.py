"""The OpenAPI document is valid and the live app keeps to it (schemathesis)."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.api.app import create_app, stop_background
from tests.integration.conftest import API_KEY, promote_new_version

pytestmark = pytest.mark.integration


@pytest.fixture
def live_app(serving_settings, churn_frame, redis_url):
    """Two versions, a real Redis: every endpoint can succeed."""
    settings = serving_settings.with_overrides(redis_url=redis_url)
    promote_new_version(settings, churn_frame)
    promote_new_version(settings, churn_frame)
    app = create_app(settings)
    app.extensions["model_cache"].refresh()
    yield app
    stop_background(app)


def test_openapi_document_is_valid_openapi_3(live_app):
    from openapi_spec_validator import validate

    document = live_app.test_client().get("/openapi.json").json
    validate(document)
    assert set(document["paths"]) >= {
        "/predict",
        "/feedback",
        "/model/status",
        "/model/rollback",
        "/models",
        "/livez",
        "/readyz",
    }
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["$ref"].endswith("PredictRequest_default")
    own = document["paths"]["/models/default/predict"]["post"]["requestBody"]
    assert own["content"]["application/json"] == body["application/json"]
    schemas = document["components"]["schemas"]
    single, batch = schemas["PredictRequest_default"]["oneOf"]
    row = single["properties"]["features"]
    assert row["required"] == [
        "age",
        "income",
        "tenure_months",
        "monthly_spend",
        "support_calls",
        "usage_hours",
        "plan",
        "region",
    ]  # the served model's features, from the schema that validates them
    plan = {"type": ["string", "null"], "maxLength": 200, "pattern": "^[^\x00]*$"}
    assert row["properties"]["plan"] == plan
    assert batch["properties"]["instances"]["maxItems"] == 1000


def test_docs_page_renders_swagger_ui(live_app):
    client = live_app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200
    assert b"/openapi.json" in page.data
    if b"swagger-ui-bundle.js" in page.data:  # installed by `make install` (npm)
        with client.get("/docs/assets/swagger-ui-bundle.js") as bundle:
            assert bundle.status_code == 200
    assert client.get("/docs/assets/../../setup.cfg").status_code == 404


# Estimator parameters are checked against the chosen model type when the request
# arrives (400 for a name the estimator does not have); the document cannot say which
# names each model type takes, so a schema-valid body may still be refused there.
# Likewise a label is checked against the model that answered its prediction, which
# the document cannot know for an id, and a registration's files must hold a model
# and its data (a scoring upload, a CSV of the model's columns), which no schema of
# bytes says.
LENIENT = {
    "POST /models": [positive_data_acceptance],
    "POST /jobs/batch-score": [positive_data_acceptance],
    "POST /model/retrain": [positive_data_acceptance],
    "POST /models/{name}/retrain": [positive_data_acceptance],
    "POST /feedback": [positive_data_acceptance],
}


def test_app_keeps_to_its_openapi_document(live_app):
    """Generated requests for every operation: no 5xx, nothing outside the spec."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", live_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = {(op.method, op.path) for op in operations}
    assert documented == _routes(live_app) | {("post", "/models/default/predict")}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):
            case.call_and_validate(
                headers={"X-API-Key": API_KEY},
                excluded_checks=LENIENT.get(case.operation.label, []),
            )

        check()


# the document itself, its page, and Flask's own static files
UNDOCUMENTED = {"/openapi.json", "/docs", "/static/<path:filename>"}


def _routes(app) -> set[tuple[str, str]]:
    """Every (method, path) the app routes, but its pages and files."""
    from services.api.auth import PAGES

    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PAGES or rule.rule in UNDOCUMENTED:
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>:]+)>", r"{\1}", rule.rule)
        routes |= {(m.lower(), path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def test_every_route_is_declared_with_its_answers(live_app):
    """A route added without an @api declaration would be missing from the document
    (and from the read-auth and schemathesis checks that walk it)."""
    from services.api.auth import PAGES
    from services.api.declare import declaration_of

    undeclared = [
        rule.rule for rule in live_app.url_map.iter_rules()
        if rule.endpoint not in PAGES
        and rule.rule not in UNDOCUMENTED
        and declaration_of(live_app.view_functions[rule.endpoint]) is None
    ]  # fmt: skip
    assert undeclared == []
    document = live_app.test_client().get("/openapi.json").json
    listed = {(m, p) for p, methods in document["paths"].items() for m in methods}
    assert listed == _routes(live_app) | {("post", "/models/default/predict")}


def test_every_synthetic_scenario_can_be_chosen_for_demo_traffic(live_app):
    from common.data.synthetic import SCENARIOS

    document = live_app.test_client().get("/openapi.json").json
    schema = document["components"]["schemas"]["DemoDriftRequest"]
    assert schema["properties"]["scenario"]["enum"] == list(SCENARIOS)
    page = live_app.test_client().get("/").data.decode()
    for name in SCENARIOS:
        assert f'<option value="{name}"' in page
