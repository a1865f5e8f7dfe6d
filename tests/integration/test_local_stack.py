"""The real local stack: `maas local start-api` (API Gateway emulation -> Lambda RIE -> awslambdaric
-> ApiFunction) against the embedded moto S3 server, driven over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from tests_support import MAAS, ROOT, http

pytestmark = pytest.mark.integration


def a_zero() -> list:
    from sklearn.datasets import load_digits

    return load_digits().images[0][:, :, None].tolist()


def test_predict_over_http(stack):
    status, body = http("POST", f"{stack['url']}/models/digits/predict", json.dumps({"instances": [a_zero()]}).encode())
    assert status == 200, body
    assert body["version"] == stack["version"]
    assert body["predictions"][0]["label"] == "0"


def test_client_mistakes_are_4xx_and_the_warm_container_survives(stack):
    url = stack["url"]
    status, body = http("POST", f"{url}/models/digits/predict", json.dumps({"instances": [a_zero()[0]]}).encode())
    assert (
        status == 400 and body["details"]["expected"] == "[None, 8, 8, 1]" and body["details"]["received"] == [1, 8, 1]
    )
    status, body = http("POST", f"{url}/models/nope/predict", json.dumps({"instances": [a_zero()]}).encode())
    assert status == 404 and body["code"] == "model_not_found"
    status, body = http("POST", f"{url}/models/digits/predict", b'{"instances": [[1, 2')
    assert status == 400 and body["code"] == "bad_request"
    status, body = http("GET", f"{url}/no/such/route")
    assert status == 404 and body["code"] == "route_not_found"
    status, body = http("DELETE", f"{url}/models/digits/predict")
    assert status == 405 and body["code"] == "method_not_allowed" and body["details"]["allowed"] == ["POST"]
    # The same container still holds the model it loaded before the bad requests.
    status, body = http("GET", f"{url}/health")
    assert status == 200 and {"model": "digits", "version": stack["version"]}.items() <= body["loaded"][0].items()


def test_list_and_describe(stack):
    status, body = http("GET", f"{stack['url']}/models")
    assert status == 200
    assert {m["name"]: m["aliases"]["production"] for m in body["models"]}["digits"] == stack["version"]
    status, body = http("GET", f"{stack['url']}/models/digits")
    assert status == 200 and body["manifest"]["artifact"]["sha256"]


def local_invoke(stack: dict, event: str) -> dict:
    """`maas local invoke ApiFunction -e events/<event>.json`; its stdout is the proxy response."""
    result = subprocess.run(
        [*MAAS, "local", "invoke", "ApiFunction", "-e", str(ROOT / "events" / f"{event}.json")],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def test_local_invoke_with_an_event_file_prints_a_200_proxy_response(stack):
    response = local_invoke(stack, "predict_digits")
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["predictions"][0]["label"] == "0"


def test_deployed_style_urls_with_the_stage_work_too(stack):
    """Swagger UI and copied API Gateway URLs carry the stage (/api/...); the local API accepts both."""
    assert http("GET", f"{stack['url']}/api/health")[0] == 200


def test_published_models_survive_a_restart_of_the_embedded_s3(stack):
    """Stop start-api (which owns the S3 server), then a new command serves from the disk copy."""
    stack["process"].send_signal(signal.SIGINT)
    stack["process"].wait(timeout=30)
    assert not (stack["state"] / "s3" / "server.json").exists()
    response = local_invoke(stack, "describe_model")
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["version"] == stack["version"]
