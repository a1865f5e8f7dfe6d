"""TF Serving's REST API and KServe v1 through the local stack (`maas local start-api` -> ApiFunction,
embedded S3), from the root URL a TF Serving client is given: the request examples of TF Serving's REST API
reference (tensorflow/serving, g3doc/api_rest.md), adapted only to the digits and blend models
tests_support.running_stack publishes and the reviews text model (the `reviews` fixture); answers in TF
Serving's shapes, values checked against onnxruntime (text after the project's own tokenisation)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests_support import ROOT, build_digits_onnx, build_two_input_onnx, digits_data, http, reviews_expected

pytestmark = pytest.mark.integration

AVAILABLE = {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
FEATURES = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]
EXTRA = [[4.0, 5.0], [1.0, 1.0]]


def post(url: str, body: dict) -> tuple[int, dict]:
    return http("POST", url, json.dumps(body).encode())


def onnx(model: bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def digits_want(x: np.ndarray) -> np.ndarray:
    return onnx(build_digits_onnx(), {"image": x})


def blend_want() -> np.ndarray:
    feeds = {"features": np.array(FEATURES, "float32"), "extra": np.array(EXTRA, "float32")}
    return onnx(build_two_input_onnx(), feeds)


def test_model_status_with_and_without_version_and_label(stack):
    url = stack["url"]
    for path in ("/v1/models/digits", "/v1/models/digits/versions/1", "/v1/models/digits/labels/production"):
        status, body = http("GET", url + path)
        assert status == 200, (path, body)
        assert body == {"name": "digits", "ready": True, "model_version_status": [{"version": "1", **AVAILABLE}]}


def test_model_metadata_with_and_without_version_and_label(stack):
    url = stack["url"]
    for path in ("/v1/models/digits", "/v1/models/digits/versions/1", "/v1/models/digits/labels/production"):
        status, body = http("GET", f"{url}{path}/metadata")
        assert status == 200, (path, body)
        assert body["model_spec"] == {"name": "digits", "signature_name": "", "version": "1"}
        signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert signature["inputs"]["image"]["dtype"] == "DT_FLOAT"
        assert [d["size"] for d in signature["inputs"]["image"]["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]


def test_predict_row_format_single_input(stack):
    x = digits_data()[0][:3]
    status, body = post(f"{stack['url']}/v1/models/digits:predict", {"instances": x.tolist()})
    assert status == 200 and list(body) == ["predictions"]
    assert np.allclose(body["predictions"], digits_want(x), atol=1e-6)


def test_predict_row_format_list_of_objects(stack):
    rows = [{"features": f, "extra": e} for f, e in zip(FEATURES, EXTRA, strict=True)]
    status, body = post(f"{stack['url']}/v1/models/blend:predict", {"instances": rows})
    assert status == 200 and np.allclose(body["predictions"], blend_want(), atol=1e-5)


def test_predict_columnar_format(stack):
    status, body = post(f"{stack['url']}/v1/models/blend:predict", {"inputs": {"features": FEATURES, "extra": EXTRA}})
    assert status == 200 and list(body) == ["outputs"] and np.allclose(body["outputs"], blend_want(), atol=1e-5)
    x = digits_data()[0][:2]
    status, body = post(f"{stack['url']}/v1/models/digits:predict", {"inputs": x.tolist()})
    assert status == 200 and np.allclose(body["outputs"], digits_want(x), atol=1e-6)


def test_predict_with_signature_versions_and_labels(stack):
    x = digits_data()[0][:1]
    body = {"signature_name": "serving_default", "instances": x.tolist()}
    for path in (
        "digits/versions/1:predict",
        "digits/labels/production:predict",
        f"digits/versions/{stack['version']}:predict",
    ):
        status, answer = post(f"{stack['url']}/v1/models/{path}", body)
        assert status == 200 and np.allclose(answer["predictions"], digits_want(x), atol=1e-6), path


def test_classify_examples(stack):
    x = digits_data()[0][:2]
    status, body = post(f"{stack['url']}/v1/models/digits:classify", {"examples": [{"image": i} for i in x.tolist()]})
    assert (
        status == 200 and [[label for label, _ in row] for row in body["results"]] == [[str(i) for i in range(10)]] * 2
    )
    assert np.allclose([[score for _, score in row] for row in body["results"]], digits_want(x), atol=1e-6)


def test_regress_examples_with_context_and_the_regress_signature(stack):
    body = {
        "signature_name": "tensorflow/serving/regress",
        "context": {"extra": EXTRA[0]},
        "examples": [{"features": f} for f in FEATURES],
    }
    status, answer = post(f"{stack['url']}/v1/models/blend:regress", body)
    feeds = {"features": np.array(FEATURES, "float32"), "extra": np.array([EXTRA[0]] * 2, "float32")}
    assert status == 200 and np.allclose(answer["results"], onnx(build_two_input_onnx(), feeds)[:, 0], atol=1e-5)


def test_errors_are_json_with_an_error_string(stack):
    """The reference's own error example: an unknown model is a 404 with {"error": ...}."""
    status, body = post(f"{stack['url']}/v1/models/half:predict", {"instances": [1.0, 5.0]})
    assert status == 404 and isinstance(body["error"], str) and body["code"] == "model_not_found"
    status, body = post(f"{stack['url']}/v1/models/digits:predict", {"signature_name": "nope", "instances": [[0]]})
    assert status == 400 and "nope" in body["error"]


TEXTS = ["great product, love it", "awful. terrible quality", "zèbre ünïcode", ""]


def b64(text: str) -> dict[str, str]:
    return {"b64": base64.b64encode(text.encode()).decode()}


def test_predict_b64_strings_answer_as_the_plain_strings(stack, reviews):
    """The reference's b64 example on a string input: bare {"b64": ...} rows, the named form, and the
    columnar form all answer what the plain strings do, which is onnxruntime's answer here."""
    url, want = f"{stack['url']}/v1/models/reviews:predict", reviews_expected(TEXTS)
    status, plain = post(url, {"instances": TEXTS})
    assert status == 200 and list(plain) == ["predictions"], plain
    assert np.allclose(plain["predictions"], want, atol=1e-6)
    assert np.argmax(plain["predictions"], axis=1).tolist()[:2] == [2, 0]  # positive, negative
    for body in (
        {"instances": [b64(t) for t in TEXTS]},
        {"instances": [{"text": b64(t)} for t in TEXTS]},
        {"signature_name": "serving_default", "instances": [{"text": b64(t)} for t in TEXTS]},
    ):
        status, answer = post(url, body)
        assert status == 200 and answer == plain, (body, answer)
    status, columns = post(url, {"inputs": {"text": [b64(t) for t in TEXTS]}})
    assert status == 200 and np.allclose(columns["outputs"], want, atol=1e-6)


def test_classify_b64_examples_on_the_text_model(stack, reviews):
    status, body = post(f"{stack['url']}/v1/models/reviews:classify", {"examples": [{"text": b64(t)} for t in TEXTS]})
    assert status == 200, body
    assert [[label for label, _ in row] for row in body["results"]] == [["negative", "neutral", "positive"]] * 4
    scores = [[score for _, score in row] for row in body["results"]]
    assert np.allclose(scores, reviews_expected(TEXTS), atol=1e-6)


def test_a_b64_value_that_is_not_base64_of_text_is_a_400_naming_the_input(stack, reviews):
    url = f"{stack['url']}/v1/models/reviews:predict"
    for value in ("not base64!", base64.b64encode(b"\xff\xfe").decode()):
        status, body = post(url, {"instances": [{"b64": value}]})
        assert status == 400 and "'text'" in body["error"] and "b64" in body["error"], body
    assert post(url, {"instances": ["still answers"]})[0] == 200


def test_kserve_v1_model_list(stack, reviews):
    status, body = http("GET", f"{stack['url']}/v1/models")
    assert status == 200 and body == {"models": ["blend", "digits", "reviews"]}


def test_a_client_given_the_stage_url_reaches_the_same_routes(stack):
    """A client given the stage URL (<root>/<stage>, what a deployed API's ApiUrl is) reaches TF Serving's
    /v1/models/... as one given the root does, and the stage form of the project's routes still works."""
    from maas.stack import load_template

    staged = f"{stack['url']}/{load_template(str(ROOT / 'template.yaml')).api_stage()}"
    assert http("GET", f"{staged}/v1/models/digits")[1]["model_version_status"][0]["version"] == "1"
    assert http("GET", f"{staged}/models/digits/versions/1/predict")[0] == 405  # the stage form of a POST
    assert http("GET", f"{staged}/health")[0] == 200


def test_the_kserve_sdk_v1_with_its_defaults(stack, tmp_path):
    python = ROOT / ".venv-clients" / "bin" / "python"
    if not python.exists():
        pytest.skip("the stock clients are not installed (make .venv-clients/.installed)")
    x = digits_data()[0][:3]
    np.savez(tmp_path / "inputs.npz", image=x)
    script = Path(__file__).with_name("stock_clients_v1.py")
    result = subprocess.run(
        [str(python), str(script), stack["url"], str(tmp_path / "inputs.npz")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    assert got["model_ready"] is True and np.allclose(got["predictions"], digits_want(x), atol=1e-6)
