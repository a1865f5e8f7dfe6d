"""The checks that run on a proxy event before the resolver parses its body."""

import base64
import json

import numpy as np
import pytest

from maas_core.shared.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from maas_core.shared.http import check_body
from maas_core.shared.json_codec import dumps

BODY = json.dumps({"instances": [[0.0]]})


def event(body=BODY, content_type="application/json", method="POST", base64_encoded=False):
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return {
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


@pytest.mark.parametrize(
    ("content_type", "seen"),
    [
        ("APPLICATION/JSON", "application/json"),
        ("Application/Json; charset=UTF-8", "application/json; charset=UTF-8"),
        ("application/problem+json", "application/json"),
        ("application/vnd.api+json", "application/json"),
        ("application/json", "application/json"),
    ],
)
def test_json_in_any_spelling_reaches_the_resolver_as_application_json(content_type, seen):
    """The resolver only parses a Content-Type that starts with "application/json"; anything else
    it would answer with an internal error."""
    checked = event(content_type=content_type)
    check_body(checked, 1000)
    assert checked["headers"] == {"Content-Type": seen} and checked["multiValueHeaders"] == {"Content-Type": [seen]}


def test_no_content_type_is_json():
    checked = event(content_type=None)
    check_body(checked, 1000)
    assert checked["headers"] == {}


@pytest.mark.parametrize("body", [BODY, None, ""])
def test_other_media_types_are_a_415_even_with_an_empty_body(body):
    with pytest.raises(UnsupportedMediaType):
        check_body(event(body=body, content_type="text/csv"), 1000)


def test_a_get_without_a_body_is_not_checked():
    check_body(event(body=None, content_type="text/csv", method="GET"), 1000)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ('{"instances": ' + "[" * 100_000 + "]" * 100_000 + "}", "nests too deeply"),
        ('{"instances": [' + "1" * 5000 + "]}", "number too long"),  # past Python's 4300-digit int limit
        ("{not json", "not valid JSON"),
        ("{", "not valid JSON"),
        ('{"instances": [1,]}', "not valid JSON"),
    ],
)
def test_bodies_the_json_parser_cannot_read_are_a_400(body, why):
    with pytest.raises(BadRequest) as err:
        check_body(event(body=body), 10_000_000)
    assert why in err.value.message


def test_base64_bodies_are_decoded_and_checked():
    encoded = base64.b64encode(BODY.encode()).decode()
    check_body(event(body=encoded, base64_encoded=True), 1000)
    with pytest.raises(BadRequest, match="base64"):
        check_body(event(body=encoded[:-3], base64_encoded=True), 1000)  # truncated
    with pytest.raises(BadRequest, match="base64"):
        check_body(event(body=base64.b64encode(b"\xff\xfe\x00").decode(), base64_encoded=True), 1000)


def test_size_is_checked_before_anything_else():
    with pytest.raises(PayloadTooLarge) as err:
        check_body(event(body="[" * 2000, content_type="text/csv"), 1000)
    assert err.value.details == {"limit_bytes": 1000, "received": 2000}


@pytest.mark.parametrize(
    ("body", "value"),
    [
        ('{"instances": [[1.5, 2]]}', {"instances": [[1.5, 2]]}),
        # What orjson refuses but the json module reads: the same values reach the tensor checks as before,
        # which answer NaN and infinities with invalid_input naming the input (test_api_contract).
        ('{"instances": [NaN, 1e999, -Infinity]}', {"instances": [float("nan"), float("inf"), float("-inf")]}),
        ('{"text": "\\ud800"}', {"text": "\ud800"}),
    ],
)
def test_the_body_is_read_once_and_returned_for_the_resolver(body, value):
    parsed = check_body(event(body=body), 10_000_000)
    assert json.dumps(parsed) == json.dumps(value)  # NaN == NaN as text


@pytest.mark.parametrize(
    ("path", "rows"),
    [
        ("/models/digits/predict", True),
        ("/models/digits/versions/3/predict", True),
        ("/v1/models/digits:predict", True),  # TF Serving's and KServe v1's
        ("/v2/models/digits/infer", False),
        ("/admin/models/digits/aliases/production", False),
    ],
)
def test_a_predict_bodys_tensor_reaches_the_resolver_as_numpy_rows(path, rows):
    """shared.tensor_json: the rows hold exactly the numbers sent; other routes' bodies stay lists."""
    parsed = check_body({**event(body='{"instances": [[1.5, 2], [3, -4e-3]]}'), "path": path}, 10_000_000)
    assert all(type(row) is np.ndarray for row in parsed["instances"]) is rows
    assert np.asarray(parsed["instances"]).tolist() == [[1.5, 2], [3, -4e-3]]


@pytest.mark.parametrize(("path", "rows"), [("/v2/models/digits/infer", True), ("/models/digits/predict", False)])
def test_an_open_inference_bodys_flat_data_reaches_the_resolver_as_rows_of_its_shape(path, rows):
    body = '{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.5, 2, 3, -4e-3]}]}'
    parsed = check_body({**event(body=body), "path": path}, 10_000_000)
    (tensor,) = parsed["inputs"]
    assert all(type(row) is np.ndarray for row in tensor["data"]) is rows
    assert np.asarray(tensor["data"]).reshape(-1).tolist() == [1.5, 2, 3, -4e-3]
    assert {k: v for k, v in tensor.items() if k != "data"} == {"name": "x", "shape": [2, 2], "datatype": "FP32"}


def test_a_request_without_a_body_to_read_returns_none():
    assert check_body(event(body=None, method="GET"), 10_000_000) is None


def test_response_bodies_orjson_cannot_write_are_written_by_the_json_module():
    assert json.loads(dumps({"a": [1.5, None, "é"]})) == {"a": [1.5, None, "é"]}
    assert json.loads(dumps(np.arange(3, dtype=np.float32))) == [0.0, 1.0, 2.0]
    assert json.loads(dumps({1: "integer key"})) == {"1": "integer key"}  # orjson refuses it; json writes it
