"""ApiFunction behind the template's catch-all (/{proxy+}) and ANY routes: a JSON 404 for a path the
API does not serve, a 405 with Allow (every method the path takes, AdminFunction's too) for a served
path asked with another method."""

from __future__ import annotations

import json

import pytest

from tests_support import Context, event


@pytest.fixture
def app(api):
    from maas_core.functions.api import app

    return app


def call(app, method: str, path: str, resource: str) -> tuple[int, dict, dict]:
    evt = event("health", httpMethod=method, path=path, resource=resource, pathParameters=None)
    evt["requestContext"].update(httpMethod=method, resourcePath=resource)
    response = app.lambda_handler(evt, Context())
    headers = response.get("headers") or {k: v[-1] for k, v in response["multiValueHeaders"].items()}
    return response["statusCode"], json.loads(response["body"]), headers


@pytest.mark.parametrize("path", ["/no/such/route", "/v1/models/digits:explain", "/models/digits/predict/extra"])
def test_an_unknown_path_is_a_json_404_route_not_found(app, path):
    status, body, headers = call(app, "GET", path, "/{proxy+}")
    assert status == 404 and body["code"] == "route_not_found" and path in body["error"]
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("method", "path", "resource", "allowed"),
    [
        ("POST", "/health", "/health", ["GET"]),
        ("DELETE", "/models/digits/predict", "/models/{name}/predict", ["POST"]),
        ("GET", "/v2/models/digits/infer", "/v2/models/{name}/infer", ["POST"]),
        ("PATCH", "/models/digits", "/models/{name}", ["GET"]),
        # AdminFunction's paths: Allow names its IAM-signed methods beside ApiFunction's own.
        (
            "PUT",
            "/models/digits/versions/20260101T000000Z-00000000",
            "/models/{name}/versions/{version}",
            ["DELETE", "GET"],
        ),
        ("POST", "/models/digits/aliases/production", "/models/{name}/aliases/{alias}", ["GET", "PUT"]),
        ("GET", "/models/digits/aliases/production/rollback", "/models/{name}/aliases/{alias}/rollback", ["POST"]),
        ("DELETE", "/models/digits/aliases/production/history", "/models/{name}/aliases/{alias}/history", ["GET"]),
    ],
)
def test_another_method_of_a_served_path_is_a_405_with_allow(app, method, path, resource, allowed):
    status, body, headers = call(app, method, path, resource)
    assert status == 405 and body["code"] == "method_not_allowed"
    assert body["details"]["allowed"] == allowed and headers["Allow"] == ", ".join(allowed)
    assert method in body["error"] and allowed[0] in body["error"]
