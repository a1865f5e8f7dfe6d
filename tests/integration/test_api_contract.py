"""The API as clients see it, through `maas local start-api`: both body conventions, the KServe v2
routes (with a stock v2 client), the OpenAPI document, and every documented client error."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests_support import http, two_input_expected

pytestmark = pytest.mark.integration


def digit(index: int = 0) -> list:
    from sklearn.datasets import load_digits

    return load_digits().images[index][:, :, None].tolist()


def post(stack, path: str, body) -> tuple[int, dict]:
    return http("POST", f"{stack['url']}{path}", json.dumps(body).encode())


def test_tf_serving_rows_and_columns_for_digits(stack):
    status, rows = post(stack, "/models/digits/predict", {"instances": [digit(0), digit(1)], "top_k": 3})
    assert status == 200 and [p["label"] for p in rows["predictions"]] == ["0", "1"]
    assert len(rows["predictions"][0]["top_k"]) == 3 and rows["version"] == stack["version"]
    status, cols = post(stack, "/models/digits/predict?top_k=2", {"inputs": {"image": [digit(0), digit(1)]}})
    assert status == 200 and cols["outputs"]["label"] == ["0", "1"]
    assert np.allclose(cols["outputs"]["probabilities"][0], rows["predictions"][0]["probabilities"], atol=1e-6)
    status, pinned = post(stack, f"/models/digits/versions/{stack['version']}/predict", {"instances": [digit(2)]})
    assert status == 200 and pinned["version"] == stack["version"]


def test_tf_serving_rows_and_columns_for_a_two_input_model(stack):
    features, extra = [1.0, 2.0, 3.0], [4.0, 5.0]
    status, rows = post(stack, "/models/blend/predict", {"instances": [{"features": features, "extra": extra}]})
    assert status == 200
    assert rows["predictions"][0]["score"] == pytest.approx([two_input_expected(features, extra)])
    status, cols = post(stack, "/models/blend/predict", {"inputs": {"features": [features], "extra": [extra]}})
    assert status == 200 and cols["outputs"]["score"] == [rows["predictions"][0]["score"]]


def test_v2_routes_answer_as_the_protocol_says(stack):
    url = stack["url"]
    assert http("GET", f"{url}/v2/health/live") == (200, {"live": True})
    assert http("GET", f"{url}/v2/health/ready") == (200, {"ready": True})
    assert http("GET", f"{url}/v2")[1]["name"] == "maas"
    status, meta = http("GET", f"{url}/v2/models/blend")
    assert status == 200 and {i["name"] for i in meta["inputs"]} == {"features", "extra"}
    assert http("GET", f"{url}/v2/models/digits/versions/{stack['version']}")[1]["inputs"][0]["shape"] == [-1, 8, 8, 1]
    assert http("GET", f"{url}/v2/models/digits/ready")[1]["ready"] is True
    assert http("GET", f"{url}/v2/models/digits/versions/{stack['version']}/ready")[0] == 200
    flat = np.asarray(digit(0)).reshape(-1).tolist()
    for data in (flat, [digit(0)]):  # flat and nested JSON tensor data
        status, body = post(
            stack,
            "/v2/models/digits/infer",
            {"id": "r1", "inputs": [{"name": "image", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": data}]},
        )
        assert status == 200 and body["id"] == "r1" and body["model_version"] == stack["version"]
        assert int(np.argmax(body["outputs"][0]["data"])) == 0
    status, body = post(
        stack,
        f"/v2/models/blend/versions/{http('GET', f'{url}/models/blend')[1]['version']}/infer",
        {
            "inputs": [
                {"name": "features", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]},
                {"name": "extra", "shape": [1, 2], "datatype": "FP32", "data": [[4, 5]]},
            ]
        },
    )
    assert status == 200 and body["outputs"][0]["data"] == pytest.approx([two_input_expected([1, 2, 3], [4, 5])])


def test_a_stock_v2_client_works_unchanged(stack):
    tritonclient = pytest.importorskip("tritonclient.http")
    client = tritonclient.InferenceServerClient(url=stack["url"].removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits")
    assert client.get_model_metadata("digits")["inputs"][0]["datatype"] == "FP32"
    image = tritonclient.InferInput("image", [2, 8, 8, 1], "FP32")
    image.set_data_from_numpy(np.asarray([digit(0), digit(1)], dtype=np.float32), binary_data=False)
    result = client.infer(
        "digits", [image], outputs=[tritonclient.InferRequestedOutput("probabilities", binary_data=False)]
    )
    assert result.as_numpy("probabilities").argmax(axis=1).tolist() == [0, 1]


def test_openapi_document_is_valid_and_swagger_renders_it(stack):
    from openapi_spec_validator import validate

    status, document = http("GET", f"{stack['url']}/openapi.json")
    assert status == 200
    validate(document)
    examples = document["paths"]["/models/{name}/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert set(examples["examples"]) == {"digits", "blend"}
    assert np.asarray(examples["examples"]["digits"]["value"]["instances"]).shape == (1, 8, 8, 1)
    status, page = http("GET", f"{stack['url']}/swagger", raw=True)
    assert status == 200 and "SwaggerUIBundle" in page and "/models/{name}/predict" in page


# ~4.6 MB: over MAX_BODY_BYTES, and its base64 (JSON is a binary media type) under Lambda's 6 MB
BIG = b'{"instances": [' + b"0," * 2_300_000 + b"0]}"
ERRORS = [
    # (what, method, path, body, headers, status, code)
    ("wrong shape", "POST", "/models/digits/predict", {"instances": [[[0.0] * 8] * 8]}, None, 400, "invalid_input"),
    ("wrong dtype", "POST", "/models/digits/predict", {"instances": [[[["a"]] * 8] * 8]}, None, 400, "invalid_input"),
    (
        "wrong v2 datatype",
        "POST",
        "/v2/models/digits/infer",
        {"inputs": [{"name": "image", "shape": [1, 8, 8, 1], "datatype": "INT64", "data": [0] * 64}]},
        None,
        400,
        "invalid_input",
    ),
    (
        "NaN",
        "POST",
        "/models/digits/predict",
        b'{"instances": [' + json.dumps([[[0.0]] * 8] * 8).replace("0.0", "NaN", 1).encode() + b"]}",
        None,
        400,
        "invalid_input",
    ),
    (
        "Infinity",
        "POST",
        "/models/digits/predict",
        b'{"instances": [' + json.dumps([[[0.0]] * 8] * 8).replace("0.0", "1e999", 1).encode() + b"]}",
        None,
        400,
        "invalid_input",
    ),
    (
        "missing input",
        "POST",
        "/models/blend/predict",
        {"inputs": {"features": [[1, 2, 3]]}},
        None,
        400,
        "invalid_input",
    ),
    (
        "extra input",
        "POST",
        "/models/blend/predict",
        {"instances": [{"features": [1, 2, 3], "extra": [1, 2], "x": [1]}]},
        None,
        400,
        "invalid_input",
    ),
    ("empty instances", "POST", "/models/digits/predict", {"instances": []}, None, 400, "invalid_input"),
    (
        "too many instances",
        "POST",
        "/models/digits/predict",
        {"instances": [[[[0]] * 8] * 8] * 257},
        None,
        400,
        "invalid_input",
    ),
    ("non-JSON", "POST", "/models/digits/predict", b"instances=1", None, 400, "bad_request"),
    ("both envelopes", "POST", "/models/digits/predict", {"instances": [], "inputs": []}, None, 400, "bad_request"),
    ("unknown field", "POST", "/models/digits/predict", {"instance": []}, None, 422, "invalid_request"),
    (
        "wrong content type",
        "POST",
        "/models/digits/predict",
        b"{}",
        {"Content-Type": "text/csv"},
        415,
        "unsupported_media_type",
    ),
    ("body over the limit", "POST", "/models/digits/predict", BIG, None, 413, "payload_too_large"),
    ("unknown model", "POST", "/models/nope/predict", {"instances": [[[[0]] * 8] * 8]}, None, 404, "model_not_found"),
    (
        "unknown version",
        "POST",
        "/models/digits/versions/20000101T000000Z-00000000/predict",
        {"instances": [[[[0]] * 8] * 8]},
        None,
        404,
        "version_not_found",
    ),
    (
        "unknown alias",
        "POST",
        "/models/digits/predict?alias=canary",
        {"instances": [[[[0]] * 8] * 8]},
        None,
        404,
        "alias_not_found",
    ),
    ("name with ..", "POST", "/models/..%2F..%2Fsecrets/predict", {"instances": []}, None, 400, "invalid_name"),
    ("name with /", "GET", "/v2/models/a%2Fb", None, None, 400, "invalid_name"),
    ("malformed version", "GET", "/models/digits/versions/..", None, None, 400, "invalid_name"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_each_client_error_is_its_documented_4xx(stack, method, path, body, headers, status, code):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    got_status, got = http(method, f"{stack['url']}{path}", data, headers=headers)
    assert (got_status, got.get("code")) == (status, code), got
    assert isinstance(got["error"], str) and got["error"]


def test_the_warm_container_survived_every_error(stack):
    status, health = http("GET", f"{stack['url']}/health")
    assert status == 200 and health["container"] == stack["container"]  # no restart since the stack started
    assert {(m["model"], m["version"]) for m in health["loaded"]} >= {("digits", stack["version"])}


# -- what the API may put in headers, and who may read a job ---------------------------------------
def request(stack, method: str, path: str, body: bytes | None = None, key: str | None = None):
    """(status, JSON body, headers) of one request, with an API key when given."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", **({"x-api-key": key} if key else {})}
    req = urllib.request.Request(f"{stack['url']}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), dict(err.headers)


def test_the_version_header_is_the_one_that_answered_and_a_bad_version_query_is_a_400(stack):
    one = {"instances": [digit(0)]}
    for query in ("", f"?version={stack['version']}"):
        status, body, headers = request(stack, "POST", f"/models/digits/predict{query}", json.dumps(one).encode())
        assert status == 200 and headers["X-Model-Version"] == body["version"] == stack["version"]
    for bad in (f"{stack['version']}%0A", f"{stack['version']}%0D%0AX-Injected:%201", "garbage", "production"):
        status, body, headers = request(
            stack, "POST", f"/models/digits/predict?version={bad}", json.dumps(one).encode()
        )
        assert (status, body["code"]) == (400, "invalid_name"), bad
        assert "X-Model-Version" not in headers and "X-Injected" not in headers


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/models/digits/versions/{version}", "DELETE, GET"),
        ("POST", "/models/digits/aliases/production", "GET, PUT"),
        ("GET", "/models/digits/aliases/production/rollback", "POST"),
        ("DELETE", "/models/digits/aliases/production/history", "GET"),
    ],
)
def test_a_wrong_method_on_an_admin_path_is_a_405_naming_every_method_it_takes(stack, method, path, allowed):
    # Deployed, these paths' other methods got API Gateway's 403 "Missing Authentication Token".
    status, body, headers = request(stack, method, path.format(version=stack["version"]), b"{}")
    assert (status, body["code"], headers["Allow"]) == (405, "method_not_allowed", allowed), body
    assert body["details"]["allowed"] == allowed.split(", ") and method in body["error"]
    # The declared methods still reach AdminFunction (unsigned locally: start-api checks no IAM).
    status, alias, _ = request(stack, "GET", "/models/digits/aliases/production")
    assert status == 200 and alias["version"] == stack["version"] and alias["etag"]


def test_a_parent_resource_no_route_names_is_a_json_404_as_deployed(stack):
    # /v2/models is an API Gateway resource only as the parent of /v2/models/{name}: no method, so the
    # API's MISSING_AUTHENTICATION_TOKEN gateway response answers, as deployed (not ApiFunction).
    for path in ("/v2/models", "/models/digits/aliases"):
        status, body, _ = request(stack, "GET", path)
        assert (status, body["code"]) == (404, "route_not_found") and body["error"], (path, body)


def test_the_openapi_document_declares_what_a_name_version_alias_and_job_id_may_be(stack):
    status, document = http("GET", f"{stack['url']}/openapi.json")
    assert status == 200
    declared = {
        (p["in"], p["name"]): json.dumps(p["schema"])
        for item in document["paths"].values()
        for op in item.values()
        for p in op.get("parameters", [])
    }
    for where, name in (
        ("path", "name"),
        ("path", "version"),
        ("path", "job_id"),
        ("query", "alias"),
        ("query", "version"),
    ):
        assert '"pattern": "^' in declared[(where, name)], (where, name)


def test_a_job_is_sigv4_presigned_uploads_and_downloads_and_is_only_its_keys(stack):
    import urllib.request
    from urllib.parse import parse_qs, urlsplit

    from sklearn.datasets import load_digits

    status, job, _ = request(stack, "POST", "/models/digits/jobs", b'{"format": "jsonl"}', key="key-of-alice")
    assert status == 201
    assert parse_qs(urlsplit(job["upload"]["url"]).query)["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    for other in ("key-of-bob", None):  # another key, or none: as if the job did not exist
        status, body, _ = request(stack, "GET", job["status_path"], key=other)
        assert (status, body["code"]) == (404, "job_not_found"), other
    rows = "\n".join(json.dumps(img.tolist()) for img in load_digits().images[:5, :, :, None]).encode()
    upload = urllib.request.Request(job["upload"]["url"], data=rows, method="PUT", headers=job["upload"]["headers"])
    with urllib.request.urlopen(upload, timeout=30) as response:
        assert response.status == 200
    deadline = time.monotonic() + 120
    while (state := request(stack, "GET", job["status_path"], key="key-of-alice")[1])["status"] in (
        "awaiting_upload",
        "running",
    ):
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
    assert state["status"] == "succeeded" and state["summary"]["scored"] == 5
    urls = [*state["downloads"]["results"], *state["downloads"]["errors"], state["downloads"]["summary"]]
    for url in urls:
        assert parse_qs(urlsplit(url).query)["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"], url
    with urllib.request.urlopen(state["downloads"]["results"][0], timeout=30) as response:
        assert [json.loads(x)["line"] for x in response.read().decode().splitlines()] == [1, 2, 3, 4, 5]
    status, body, _ = request(stack, "GET", job["status_path"], key="key-of-bob")
    assert status == 404 and "downloads" not in body


def test_a_version_whose_model_no_longer_matches_its_sha256_gets_no_job(stack):
    from maas_core.shared.registry import model_key
    from tests_support import build_digits_onnx, digits_manifest

    s3, bucket = stack["s3"].client(), stack["bucket"]
    version = stack["registry"].publish("digits", build_digits_onnx(seed=1), digits_manifest()).version
    s3.put_object(Bucket=bucket, Key=model_key("digits", version), Body=b"bytes that are not the model")
    jobs_before = s3.list_objects_v2(Bucket=bucket, Prefix="batch/jobs/").get("KeyCount", 0)
    status, body, _ = request(stack, "POST", "/models/digits/jobs", json.dumps({"version": version}).encode())
    assert (status, body["code"]) == (503, "model_integrity_error"), body
    assert s3.list_objects_v2(Bucket=bucket, Prefix="batch/jobs/").get("KeyCount", 0) == jobs_before


def test_a_manifest_is_described_over_http_exactly_as_it_was_published(stack):
    """Keys MaaS does not know (a newer trainer's) and the key order survive the typed manifest."""
    from maas_core.shared.layout import manifest_key
    from tests_support import build_digits_onnx, digits_manifest

    draft = {**digits_manifest(), "model_card": {"owner": "team-a", "tags": ["digits"]}}
    draft["inputs"] = [{**draft["inputs"][0], "description": "8x8 grey pixels"}]
    version = stack["registry"].publish("carded", build_digits_onnx(seed=7), draft).version
    stored = stack["s3"].client().get_object(Bucket=stack["bucket"], Key=manifest_key("carded", version))
    written = json.loads(stored["Body"].read())
    assert written["model_card"] == draft["model_card"] and written["inputs"][0]["description"] == "8x8 grey pixels"
    status, body = http("GET", f"{stack['url']}/models/carded/versions/{version}")
    assert status == 200 and json.dumps(body["manifest"]) == json.dumps(written)  # key order included
    status, meta = http("GET", f"{stack['url']}/v2/models/carded/versions/{version}")
    assert status == 200 and meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
