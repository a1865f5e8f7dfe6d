"""The binary tensor data extension (KServe v2 / Triton) on ApiFunction: a raw-bytes body read as
API Gateway hands it over (base64), binary outputs when asked, and every bad body a 400 naming what
came. The answers are checked against onnxruntime on the same input."""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

import numpy as np
import pytest

from maas_core.shared import binary_tensors
from maas_core.shared.errors import InvalidInput
from maas_core.shared.model_cache import ModelCache
from tests_support import (
    Context,
    build_digits_onnx,
    build_reviews_onnx,
    digits_data,
    event,
    reviews_expected,
    reviews_manifest,
)


@pytest.fixture
def app(registry, monkeypatch):
    from maas_core.functions.api import app

    cache = ModelCache(os.environ["MODEL_BUCKET"], alias_ttl_seconds=0, registry=registry, on_load=app.models.on_load)
    monkeypatch.setattr(app, "models", cache)
    return app


def images(count: int = 2) -> np.ndarray:
    return digits_data()[0][:count]


def expected(x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(build_digits_onnx(), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x})[0]


def binary_body(header: dict[str, Any], *blobs: bytes) -> tuple[bytes, int]:
    head = json.dumps(header).encode()
    return head + b"".join(blobs), len(head)


def binary_event(body: bytes, header_length: int | str, **header: str) -> dict[str, Any]:
    """A v2 infer event as API Gateway sends a body of a binary media type: base64, marked so."""
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(header_length)}
    headers.update(header)
    return event(
        "v2_infer_digits",
        headers=headers,
        multiValueHeaders={k: [v] for k, v in headers.items()},
        body=base64.b64encode(body).decode(),
        isBase64Encoded=True,
    )


def image_header(x: np.ndarray, size: int | None = None, **extra: Any) -> dict[str, Any]:
    tensor = {"name": "image", "shape": list(x.shape), "datatype": "FP32"}
    tensor["parameters"] = {"binary_data_size": x.nbytes if size is None else size}
    return {"inputs": [tensor], **extra}


def split(response: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    assert response["isBase64Encoded"] is True
    raw = base64.b64decode(response["body"])
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    headers.update({k.lower(): v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()})
    length = int(headers["inference-header-content-length"])
    assert headers["content-type"] == "application/octet-stream"
    return json.loads(raw[:length]), raw[length:]


def test_binary_inputs_with_binary_outputs_answer_what_onnxruntime_answers(app, published):
    x = images()
    body, length = binary_body(image_header(x, parameters={"binary_data_output": True}), x.tobytes())
    response = app.lambda_handler(binary_event(body, length), Context())
    assert response["statusCode"] == 200
    header, rest = split(response)
    (output,) = header["outputs"]
    assert output["shape"] == [2, 10] and output["datatype"] == "FP32" and "data" not in output
    assert output["parameters"]["binary_data_size"] == len(rest) == 2 * 10 * 4
    got = np.frombuffer(rest, dtype="<f4").reshape(2, 10)
    assert np.allclose(got, expected(x), atol=1e-6)
    assert got.argmax(axis=1).tolist() == [0, 1]


def test_binary_inputs_answer_json_unless_binary_outputs_are_asked(app, published):
    x = images()
    body, length = binary_body(image_header(x), x.tobytes())
    response = app.lambda_handler(binary_event(body, length), Context())
    assert response["statusCode"] == 200 and not response["isBase64Encoded"]
    output = json.loads(response["body"])["outputs"][0]
    assert np.allclose(np.asarray(output["data"]).reshape(2, 10), expected(x), atol=1e-6)


def test_an_output_asked_binary_by_name_and_the_classification_strings_as_bytes(app, published):
    x = images(1)
    outputs = [{"name": "probabilities", "parameters": {"binary_data": True, "classification": 2}}]
    body, length = binary_body(image_header(x, outputs=outputs), x.tobytes())
    header, rest = split(app.lambda_handler(binary_event(body, length), Context()))
    assert header["outputs"][0]["datatype"] == "BYTES" and header["outputs"][0]["shape"] == [1, 2]
    (size,) = struct.unpack_from("<I", rest)
    assert rest[4 : 4 + size].decode().endswith(":0:0")  # "score:index:label" of the best class, a zero


def test_a_json_request_marked_base64_still_works(app, published):
    """BinaryMediaTypes covers what tritonclient sends (no Content-Type): API Gateway then hands
    plain JSON bodies over base64 too."""
    evt = event("v2_infer_digits")
    evt.update(body=base64.b64encode(evt["body"].encode()).decode(), isBase64Encoded=True)
    response = app.lambda_handler(evt, Context())
    assert response["statusCode"] == 200 and json.loads(response["body"])["outputs"][0]["shape"] == [1, 10]


def test_v2_server_metadata_advertises_the_extension(app):
    response = app.lambda_handler(event("v2_server_metadata"), Context())
    assert "binary_tensor_data" in json.loads(response["body"])["extensions"]


X = images(1)
BAD_BODIES = [
    # (what, body, header length, what the error names)
    ("header length beyond the body", X.tobytes(), 10_000, "body has only"),
    ("header length not a number", X.tobytes(), "ten", "byte count"),
    ("header length a unicode digit", X.tobytes(), "\u00b2", "byte count"),
    ("fewer bytes than binary_data_size", binary_body(image_header(X), X.tobytes()[:-4]), None, "only 252 are left"),
    ("more bytes than declared", binary_body(image_header(X), X.tobytes() + b"\0" * 4), None, "4 bytes after"),
    ("size not shape x dtype", binary_body(image_header(X, size=128), X.tobytes()[:128]), None, "takes 256"),
    ("negative size", binary_body(image_header(X, size=-1), b""), None, "byte count"),
]


@pytest.mark.parametrize(("what", "body", "length", "named"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_a_bad_binary_body_is_a_400_naming_what_came(app, published, what, body, length, named):
    if length is None:
        body, length = body
    response = app.lambda_handler(binary_event(body, length), Context())
    error = json.loads(response["body"])
    assert response["statusCode"] == 400 and error["code"] == "invalid_input" and named in error["error"], error
    x = images()  # the warm container still answers
    good, good_length = binary_body(image_header(x), x.tobytes())
    assert app.lambda_handler(binary_event(good, good_length), Context())["statusCode"] == 200


@pytest.mark.parametrize("header", [b"[" * 100_000, b"\xff{}", b""], ids=["deep", "not utf-8", "empty"])
def test_a_header_that_is_not_json_is_a_400_bad_request(app, published, header):
    response = app.lambda_handler(binary_event(header + X.tobytes(), len(header)), Context())
    assert response["statusCode"] == 400 and json.loads(response["body"])["code"] == "bad_request"


def test_nan_in_binary_floats_is_refused_as_in_json(app, published):
    x = images(1).copy()
    x.reshape(-1)[3] = np.nan
    body, length = binary_body(image_header(x), x.tobytes())
    error = json.loads(app.lambda_handler(binary_event(body, length), Context())["body"])
    assert error["code"] == "invalid_input" and "NaN" in error["error"]


def test_bytes_elements_are_length_prefixed_both_ways():
    packed = binary_tensors.encode(["a", "héllo", ""])
    assert packed == b"\x01\0\0\0a" + b"\x06\0\0\0h\xc3\xa9llo" + b"\0\0\0\0"
    assert binary_tensors.decode("text", packed, "BYTES", [3]) == ["a", "héllo", ""]
    with pytest.raises(InvalidInput, match="cut short"):
        binary_tensors.decode("text", packed[:-2] + b"\x05", "BYTES", [3])
    with pytest.raises(InvalidInput, match="takes UTF-8"):
        binary_tensors.decode("text", b"\x01\0\0\0\xff", "BYTES", [1])


def test_numbers_are_little_endian_whatever_the_array():
    big = np.arange(3, dtype=">i4")
    assert binary_tensors.encode(big) == np.arange(3, dtype="<i4").tobytes()
    assert binary_tensors.decode("n", big.astype("<i8").tobytes(), "INT64", [3]).tolist() == [0, 1, 2]


def test_binary_outputs_fall_back_to_json_for_a_client_api_gateway_would_send_base64_text(app, published):
    """API Gateway turns a base64 answer into bytes only for an Accept of BinaryMediaTypes; any other
    client would get base64 text, so it gets the outputs as JSON, which the protocol's clients read."""
    x = images()
    body, length = binary_body(image_header(x, parameters={"binary_data_output": True}), x.tobytes())
    response = app.lambda_handler(binary_event(body, length, Accept="*/*"), Context())
    assert response["statusCode"] == 200 and not response["isBase64Encoded"]
    output = json.loads(response["body"])["outputs"][0]
    assert "binary_data_size" not in (output.get("parameters") or {}) and len(output["data"]) == 20


def test_the_local_api_sends_bodies_as_api_gateway_does():
    from maas.local_api import proxy_event
    from maas.template import route as make_route

    route, types = make_route("post", "/v2/models/{name}/infer"), list(binary_tensors.BINARY_MEDIA_TYPES)

    def sent(headers: dict[str, str], body: bytes) -> dict[str, Any]:
        return proxy_event("POST", "/v2/models/d/infer", headers, body, route, {"name": "d"}, "v1", types)

    raw = b'{"inputs": []}' + np.arange(4, dtype="<f4").tobytes()
    for headers in ({"Content-Type": "application/octet-stream"}, {}):  # the kserve SDK; tritonclient
        evt = sent(headers, raw)
        assert evt["isBase64Encoded"] and base64.b64decode(evt["body"]) == raw
    text = sent({"Content-Type": "text/plain"}, b"hello")  # not a binary media type: passed as text
    assert text["body"] == "hello" and not text["isBase64Encoded"]


def test_a_text_input_sent_as_binary_bytes_is_tokenised_as_its_json_twin():
    from test_text import text_model

    from maas_core.shared.kserve import feeds_from_infer
    from maas_core.shared.schemas import InferRequest

    texts = ["great", "awful price"]
    json_request = InferRequest(inputs=[{"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}])
    header, tensors = binary_tensors.unpack(*text_body(texts))
    binary_request = InferRequest(**header)
    want = feeds_from_infer(json_request, text_model(), max_batch=8)["tokens"]
    assert feeds_from_infer(binary_request, text_model(), 8, tensors)["tokens"].tolist() == want.tolist()
    header, tensors = binary_tensors.unpack(*text_body(texts[:1], shape=[2]))
    with pytest.raises(InvalidInput, match="1 data elements; shape \\[2\\]"):
        feeds_from_infer(InferRequest(**header), text_model(), 8, tensors)


def text_body(texts: list[str], shape: list[int] | None = None) -> tuple[bytes, str]:
    """(body, header length) of a BYTES tensor named text, as tritonclient would send it."""
    blob = binary_tensors.encode(texts)
    tensor = {"name": "text", "shape": shape or [len(texts)], "datatype": "BYTES"}
    body, length = binary_body({"inputs": [{**tensor, "parameters": {"binary_data_size": len(blob)}}]}, blob)
    return body, str(length)


def test_a_real_text_model_answers_binary_bytes_as_tritonclient_sends_them(app, registry):
    """tritonclient's default for a BYTES input (each string a 4-byte little-endian length and its UTF-8
    bytes) on a published text model: the outputs asked binary are onnxruntime's answer on the same
    strings after the manifest's tokenisation, and class_count's "score:index:label" come length-prefixed."""
    registry.publish("reviews", build_reviews_onnx(), reviews_manifest())
    texts = ["great product, love it", "awful. terrible quality", "zèbre", ""]

    def infer(parameters: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        body, length = text_body(texts)
        header = {**json.loads(body[: int(length)]), "outputs": [{"name": "probabilities", "parameters": parameters}]}
        head = json.dumps(header).encode()
        evt = binary_event(head + body[int(length) :], len(head))
        evt.update(path="/v2/models/reviews/infer", pathParameters={"name": "reviews"})
        response = app.lambda_handler(evt, Context())
        assert response["statusCode"] == 200, response["body"]
        answer, rest = split(response)
        return answer["outputs"][0], rest

    want = reviews_expected(texts)
    scores, rest = infer({"binary_data": True})
    assert scores["parameters"]["binary_data_size"] == len(rest) == want.size * 4
    assert np.allclose(np.frombuffer(rest, dtype="<f4").reshape(want.shape), want, atol=1e-6)
    best, rest = infer({"binary_data": True, "classification": 1})
    assert best["datatype"] == "BYTES" and best["shape"] == [4, 1]
    labels = binary_tensors.decode("best", rest, "BYTES", [4])
    assert [label.split(":")[2] for label in labels[:2]] == ["positive", "negative"]
