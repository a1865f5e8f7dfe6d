"""TF Serving's REST API and KServe v1 on /v1/models (issue 18): ApiFunction behind the catch-all
(/{proxy+}), with moto's S3 and real onnxruntime sessions on the digits and blend models; answers in TF
Serving's shapes, checked against onnxruntime run on the same inputs."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from maas_core.shared import tfserving
from maas_core.shared.dtypes import DTYPES
from maas_core.shared.errors import BadRequest, InvalidInput
from tests_support import build_two_input_onnx, digits_data, event, two_input_manifest

BLEND = {"features": [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], "extra": [[4.0, 5.0], [1.0, 1.0]]}


@pytest.fixture
def stack(api, registry, digits_onnx, make_manifest):
    """digits (classifier, production) published twice, blend (two-input regression) once."""
    first = registry.publish("digits", digits_onnx, make_manifest(), version="20260101T000000Z-00000001")
    registry.publish("digits", digits_onnx, make_manifest(), version="20260102T000000Z-00000002")
    registry.publish("blend", build_two_input_onnx(), two_input_manifest())
    return {"api": api, "first": first.version}


def call(stack, method: str, path: str, body=None) -> tuple[int, dict, dict]:
    evt = event("health", httpMethod=method, path=path, resource="/{proxy+}", pathParameters={"proxy": path[1:]})
    evt["requestContext"].update(httpMethod=method, resourcePath="/{proxy+}")
    if body is not None:
        evt["body"] = json.dumps(body)
        evt["headers"] = {**evt["headers"], "Content-Type": "application/json"}
    return stack["api"](evt)


def images(n: int = 3) -> np.ndarray:
    return digits_data()[0][:n]


def onnx_digits(x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    from tests_support import build_digits_onnx

    return ort.InferenceSession(build_digits_onnx(), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


def test_predict_row_form_answers_the_plain_per_instance_values(stack):
    x = images()
    status, body, headers = call(stack, "POST", "/v1/models/digits:predict", {"instances": x.tolist()})
    assert status == 200, body
    assert list(body) == ["predictions"]  # no label, score, model or version: TF Serving's shape
    assert np.allclose(body["predictions"], onnx_digits(x), atol=1e-6)
    assert headers["X-Model-Version"] == "20260101T000000Z-00000001"


def test_predict_columnar_form_answers_the_plain_tensor(stack):
    x = images(2)
    for inputs in (x.tolist(), {"image": x.tolist()}):
        status, body, _ = call(stack, "POST", "/v1/models/digits:predict", {"inputs": inputs})
        assert status == 200 and list(body) == ["outputs"], body
        assert np.allclose(body["outputs"], onnx_digits(x), atol=1e-6)


def test_list_of_objects_rows_name_the_input(stack):
    x = images(2)
    rows = [{"image": image} for image in x.tolist()]
    status, body, _ = call(stack, "POST", "/v1/models/digits:predict", {"instances": rows})
    assert status == 200 and np.allclose(body["predictions"], onnx_digits(x), atol=1e-6)
    status, body, _ = call(stack, "POST", "/v1/models/digits:predict", {"instances": [{"pixels": x[0].tolist()}]})
    assert (status, body["code"]) == (400, "invalid_input") and body["details"]["expected"] == ["image"]


def test_two_inputs_by_rows_and_by_columns(stack):
    rows = [{"features": f, "extra": e} for f, e in zip(BLEND["features"], BLEND["extra"], strict=True)]
    status, body, _ = call(stack, "POST", "/v1/models/blend:predict", {"instances": rows})
    assert status == 200 and body == {"predictions": [[1 + 4 + 9 - 4 + 2.5 + 0.25], [-1 + 0.5 + 0.25]]}
    status, body, _ = call(stack, "POST", "/v1/models/blend:predict", {"inputs": BLEND})
    assert status == 200 and body == {"outputs": [[12.75], [-0.25]]}


def test_versions_and_labels_pin_what_answers(stack):
    x = images(1).tolist()
    for path, version in (
        ("/v1/models/digits/versions/2:predict", "20260102T000000Z-00000002"),
        ("/v1/models/digits/versions/20260102T000000Z-00000002:predict", "20260102T000000Z-00000002"),
        ("/v1/models/digits/labels/production:predict", "20260101T000000Z-00000001"),
    ):
        status, body, headers = call(stack, "POST", path, {"instances": x})
        assert status == 200 and headers["X-Model-Version"] == version, (path, body)
    status, body, _ = call(stack, "POST", "/v1/models/digits/versions/3:predict", {"instances": x})
    assert (status, body["code"]) == (404, "version_not_found")
    status, body, _ = call(stack, "POST", "/v1/models/digits/labels/canary:predict", {"instances": x})
    assert status == 404 and body["code"] == "alias_not_found"


def test_a_pin_of_another_kind_is_a_404_and_a_malformed_one_a_400(stack):
    x = images(1).tolist()
    for method, path in (
        ("POST", "/v1/models/digits/tags/2:predict"),
        ("GET", "/v1/models/digits/tags/2"),
        ("GET", "/v1/models/digits/tags/2/metadata"),
    ):
        status, body, _ = call(stack, method, path, {"instances": x} if method == "POST" else None)
        assert (status, body["code"]) == (404, "route_not_found") and "/versions/" in str(body), (path, body)
    for path in ("/v1/models/digits/versions/production:predict", "/v1/models/digits/labels/Prod:predict"):
        status, body, _ = call(stack, "POST", path, {"instances": x})
        assert (status, body["code"]) == (400, "invalid_name"), (path, body)
    status, body, _ = call(stack, "GET", "/v1/models/digits/versions/2:predict")
    assert (status, body["code"]) == (404, "route_not_found")


def test_signature_name_serving_default_is_served_and_any_other_is_a_400(stack):
    x = images(1).tolist()
    status, _, _ = call(
        stack, "POST", "/v1/models/digits:predict", {"signature_name": "serving_default", "instances": x}
    )
    assert status == 200
    status, body, _ = call(
        stack, "POST", "/v1/models/digits:predict", {"signature_name": "predict_images", "instances": x}
    )
    assert status == 400 and "predict_images" in body["error"] and "serving_default" in body["error"]
    assert body["code"] == "bad_request"


def test_bad_bodies_are_4xx_with_an_error_string(stack):
    x = images(1).tolist()
    for bad in ({"instances": x, "inputs": x}, {}, {"examples": [{"image": x[0]}]}):
        status, body, _ = call(stack, "POST", "/v1/models/digits:predict", bad)
        assert status == 400 and isinstance(body["error"], str), (bad, body)
    status, body, _ = call(stack, "POST", "/v1/models/digits:predict", {"instances": x, "context": {}})
    assert status == 400 and "classify and regress" in body["error"]
    status, body, _ = call(stack, "POST", "/v1/models/digits:predict", {"instances": [[1.0]]})
    assert (status, body["code"]) == (400, "invalid_input") and "shape" in body["error"]
    status, body, _ = call(stack, "POST", "/v1/models/digits:predict", {"instances": x, "top_k": 3})
    assert (status, body["code"]) == (422, "invalid_request")


def test_classify_answers_label_score_pairs_per_example(stack):
    x = images(2)
    examples = [{"image": image} for image in x.tolist()]
    status, body, _ = call(stack, "POST", "/v1/models/digits:classify", {"examples": examples})
    assert status == 200, body
    want = onnx_digits(x)
    assert [[label for label, _ in row] for row in body["results"]] == [[str(i) for i in range(10)]] * 2
    assert np.allclose([[score for _, score in row] for row in body["results"]], want, atol=1e-6)


def test_regress_answers_one_float_per_example_with_the_context_merged(stack):
    body = {"context": {"extra": [4.0, 5.0]}, "examples": [{"features": [1.0, 2.0, 3.0]}, {"features": [0, 0, 0]}]}
    status, answer, _ = call(stack, "POST", "/v1/models/blend:regress", body)
    assert status == 200 and answer == {"results": [12.75, 0.25 - 4 + 2.5]}


def test_regress_takes_its_method_signature_and_refuses_a_feature_in_context_and_example(stack):
    body = {"signature_name": "tensorflow/serving/regress", "examples": [{"features": [1, 2, 3], "extra": [4, 5]}]}
    assert call(stack, "POST", "/v1/models/blend:regress", body)[:2] == (200, {"results": [12.75]})
    body["signature_name"] = "tensorflow/serving/classify"
    status, answer, _ = call(stack, "POST", "/v1/models/blend:regress", body)
    assert status == 400 and "tensorflow/serving/regress" in answer["error"]
    body = {"context": {"extra": [4, 5]}, "examples": [{"features": [1, 2, 3], "extra": [0, 0]}]}
    status, answer, _ = call(stack, "POST", "/v1/models/blend:regress", body)
    assert status == 400 and "'extra'" in answer["error"] and "context" in answer["error"]


def test_classify_and_regress_refuse_the_other_task_naming_it(stack):
    status, body, _ = call(stack, "POST", "/v1/models/blend:classify", {"examples": [{"features": [1, 2, 3]}]})
    assert status == 400 and "regression" in body["error"] and ":regress" in body["error"]
    status, body, _ = call(stack, "POST", "/v1/models/digits:regress", {"examples": [{"image": images(1)[0].tolist()}]})
    assert status == 400 and "classification" in body["error"]
    status, body, _ = call(stack, "POST", "/v1/models/digits:classify", {"instances": images(1).tolist()})
    assert status == 400 and "examples" in body["error"]


def test_an_unknown_verb_is_a_404_route_not_found(stack):
    for method, path in (("POST", "/v1/models/digits:explain"), ("GET", "/v1/models/digits:predict")):
        status, body, _ = call(stack, method, path, {"instances": [[0]]} if method == "POST" else None)
        assert (status, body["code"]) == (404, "route_not_found") and path in body["error"]


def test_status_answers_tf_serving_and_kserve_v1_in_one_body(stack):
    available = {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    status, body, _ = call(stack, "GET", "/v1/models/digits")
    assert status == 200 and body["name"] == "digits" and body["ready"] is True
    assert body["model_version_status"] == [{"version": "2", **available}, {"version": "1", **available}]
    status, body, _ = call(stack, "GET", "/v1/models/digits/versions/2")
    assert status == 200 and body["model_version_status"] == [{"version": "2", **available}]
    status, body, _ = call(stack, "GET", "/v1/models/digits/labels/production")
    assert status == 200 and body["model_version_status"] == [{"version": "1", **available}]
    status, body, _ = call(stack, "GET", "/v1/models/nothing")
    assert status == 404 and isinstance(body["error"], str)
    status, body, _ = call(stack, "GET", "/v1/models/Bad_Name")
    assert (status, body["code"]) == (400, "invalid_name")


def test_metadata_is_a_signature_def_from_the_manifest(stack):
    status, body, _ = call(stack, "GET", "/v1/models/digits/metadata")
    assert status == 200, body
    assert body["model_spec"] == {"name": "digits", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    image = signature["inputs"]["image"]
    assert image["dtype"] == "DT_FLOAT" and image["name"] == "image:0"
    assert [d["size"] for d in image["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]
    assert [d["size"] for d in signature["outputs"]["probabilities"]["tensor_shape"]["dim"]] == ["-1", "10"]
    classify = body["metadata"]["signature_def"]["signature_def"]["tensorflow/serving/classify"]
    assert classify["method_name"] == "tensorflow/serving/classify" and classify["inputs"] == signature["inputs"]
    status, body, _ = call(stack, "GET", "/v1/models/digits/versions/2/metadata")
    assert status == 200 and body["model_spec"]["version"] == "2"
    status, body, _ = call(stack, "GET", "/v1/models/blend/labels/production/metadata")
    assert status == 200 and set(body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]) == {
        "features",
        "extra",
    }


def test_kserve_v1_lists_the_model_names(stack):
    status, body, _ = call(stack, "GET", "/v1/models")
    assert status == 200 and body == {"models": ["blend", "digits"]}


def test_every_manifest_dtype_has_a_tensorflow_name():
    assert all(d.tf.startswith("DT_") for d in DTYPES.values())
    assert len({d.tf for d in DTYPES.values()}) == len(DTYPES)  # no two dtypes share one


def test_b64_values_of_a_text_input_are_decoded_to_its_strings():
    from test_text import text_model

    model = text_model()
    encoded = [{"b64": base64.b64encode(t.encode()).decode()} for t in ("great", "awful price")]
    for body in (
        {"instances": encoded},
        {"instances": [{"text": e} for e in encoded]},
        {"inputs": encoded},
        {"inputs": {"text": encoded}},
    ):
        feeds = tfserving.feeds(tfserving.TFRequest(**body), model, max_batch=8)
        assert feeds["tokens"].tolist() == [[0, 0, 0, 2], [0, 0, 5, 4]], body
    with pytest.raises(InvalidInput, match="b64"):
        tfserving.feeds(tfserving.TFRequest(instances=[{"b64": "not base64!"}]), model, max_batch=8)
    with pytest.raises(BadRequest, match="signature"):
        tfserving.feeds(tfserving.TFRequest(signature_name="x", instances=["great"]), model, max_batch=8)


def test_the_references_curl_examples_are_read_as_json_whatever_their_form_content_type(stack):
    """TF Serving's reference sends `curl -d '{...}'`: Content-Type application/x-www-form-urlencoded. TF
    Serving reads it as JSON, and so do its paths here; the project's own routes still refuse it (415)."""
    x = images(1)
    evt = event("health", httpMethod="POST", path="/v1/models/digits:predict", resource="/{proxy+}")
    evt["pathParameters"] = {"proxy": "v1/models/digits:predict"}
    evt["requestContext"].update(httpMethod="POST", resourcePath="/{proxy+}")
    evt["body"] = json.dumps({"instances": x.tolist()})
    evt["headers"] = {**evt["headers"], "Content-Type": "application/x-www-form-urlencoded"}
    status, body, _ = stack["api"](evt)
    assert status == 200, body
    assert np.allclose(body["predictions"], onnx_digits(x), atol=1e-6)
    own = event("predict_digits")
    own["headers"] = {**own["headers"], "Content-Type": "application/x-www-form-urlencoded"}
    status, body, _ = stack["api"](own)
    assert status == 415 and body["code"] == "unsupported_media_type"
