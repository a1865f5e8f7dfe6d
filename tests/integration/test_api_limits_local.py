"""Limits a user meets through `maas local start-api`: the open OpenAPI document and Swagger page stay
under Lambda's 6 MB response limit with a large-input model published, and a request's own model
name or version never becomes an EMF metric dimension (the function's stdout is start-api's log)."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest

from tests_support import digits_manifest, http, serialized

pytestmark = pytest.mark.integration

LAMBDA_RESPONSE_LIMIT = 6_000_000  # Lambda's 6 MB synchronous response limit, with room for headers
WIDE_SHAPE = [None, 512, 512, 3]  # one instance is 786,432 values, far over shared.openapi's example cap
UNPUBLISHED = "20000101T000000Z-0badc0de"  # a well-formed version no model has


def build_wide_onnx() -> bytes:
    """A real classifier on 512x512x3 images: the mean of each channel through a 3x10 layer, softmax."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["means"], axes=[1, 2], keepdims=0),
            helper.make_node("MatMul", ["means", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "wide",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, WIDE_SHAPE)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])],
        initializer=[numpy_helper.from_array(np.arange(30, dtype="float32").reshape(3, 10) / 30, "weights")],
    )
    return serialized(graph)


def wide_manifest() -> dict[str, Any]:
    manifest = digits_manifest()
    manifest.update(
        inputs=[{"name": "image", "dtype": "float32", "shape": WIDE_SHAPE}],
        preprocessing={"client": "raw 512x512x3 pixel values"},
    )
    return manifest


def get(stack, path: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{stack['url']}{path}", timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_a_512x512x3_model_leaves_openapi_and_swagger_under_the_lambda_response_limit(stack):
    wide = stack["registry"].publish("wide", build_wide_onnx(), wide_manifest()).version
    assert stack["registry"].resolve("wide") == wide  # the first publish made it production

    status, raw = get(stack, "/openapi.json")
    assert status == 200, raw[:300]
    assert len(raw) < LAMBDA_RESPONSE_LIMIT
    document = json.loads(raw)
    for path in ("/models/{name}/predict", "/v2/models/{name}/infer"):
        examples = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        assert set(examples) >= {"digits", "blend", "wide"}, path
        # Too large to show: a schema-only example that names the model, its version and its shape.
        assert "value" not in examples["wide"] and examples["wide"]["summary"] == f"wide {wide}"
        assert "[None, 512, 512, 3]" in examples["wide"]["description"]
        assert "value" in examples["digits"]  # small models keep their zero-filled bodies

    status, page = get(stack, "/swagger")
    assert status == 200 and len(page) < LAMBDA_RESPONSE_LIMIT
    assert b"SwaggerUIBundle" in page and f"wide {wide}".encode() in page

    # Within the TTL the registry is not re-read and the same document comes back.
    assert get(stack, "/openapi.json") == (200, raw)


def emf_lines(log: str) -> list[dict[str, Any]]:
    """The EMF documents Powertools printed to the function's stdout (one JSON object a line)."""
    found = []
    for line in log.splitlines():
        start = line.find('{"_aws"')
        if start < 0:
            continue
        try:
            found.append(json.loads(line[start:]))
        except json.JSONDecodeError:
            continue
    return found


def test_no_emf_dimension_comes_from_a_request_only_from_a_resolved_version(stack):
    log_path = stack["state"] / "start-api.log"
    before = log_path.stat().st_size
    one = json.dumps({"instances": [[[[0.0]] * 8] * 8]}).encode()
    v2_one = json.dumps({"inputs": [{"name": "image", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0] * 64}]})
    for name in (f"nosuch-{i}" for i in range(20)):
        for path in (
            f"/models/{name}/predict",
            f"/models/{name}/predict?version={UNPUBLISHED}",
            f"/models/{name}/versions/{UNPUBLISHED}/predict",
            f"/v2/models/{name}/versions/{UNPUBLISHED}/infer",
        ):
            body = v2_one.encode() if "/v2/" in path else one
            status, error = http("POST", f"{stack['url']}{path}", body)
            assert (status, error["code"]) in ((404, "model_not_found"), (404, "version_not_found")), (path, error)
    for path in (f"/models/digits/predict?version={UNPUBLISHED}", f"/models/digits/versions/{UNPUBLISHED}/predict"):
        status, error = http("POST", f"{stack['url']}{path}", one)
        assert (status, error["code"]) == (404, "version_not_found"), (path, error)

    # A real predict last: once its EMF line is in the log, every line before it is too.
    status, answer = http("POST", f"{stack['url']}/models/digits/predict", one)
    assert status == 200 and answer["version"] == stack["version"]
    deadline = time.monotonic() + 10
    while True:
        with log_path.open("rb") as log:
            log.seek(before)
            emitted = emf_lines(log.read().decode(errors="replace"))
        served = [e for e in emitted if e.get("model") == "digits" and "Requests" in e]
        if served or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert served, "the real predict wrote no EMF line with its model dimension to start-api's log"
    assert served[-1]["version"] == stack["version"] and served[-1]["variant"] == "stable"

    assert not [e for e in emitted if str(e.get("model", "")).startswith("nosuch-")]
    assert not [e for e in emitted if e.get("version") == UNPUBLISHED]
