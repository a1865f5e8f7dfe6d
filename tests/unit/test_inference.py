import numpy as np
import pytest

from shared.errors import BadRequest, InvalidInput, PayloadTooLarge
from shared.inference import feeds_from_body, format_predictions, parse_json_body, run, to_tensor
from shared.model_cache import ModelCache

SPEC = {"name": "image", "dtype": "float32", "shape": [None, 8, 8, 1]}


def test_json_body_size_is_checked_before_parsing():
    with pytest.raises(PayloadTooLarge) as err:
        parse_json_body(b"[" * 100, max_bytes=10)
    assert err.value.status == 413 and err.value.details == {"limit_bytes": 10, "received": 100}


@pytest.mark.parametrize("body", [b"", b"{", b"not json", b'{"instances": [1,]}'])
def test_malformed_json_is_a_400(body):
    with pytest.raises(BadRequest):
        parse_json_body(body, max_bytes=1000)


def test_wrong_shape_names_expected_and_received():
    with pytest.raises(InvalidInput) as err:
        to_tensor([[[0.0] * 8] * 8], SPEC, max_batch=10)
    assert err.value.details["expected"] == "[None, 8, 8, 1]"
    assert err.value.details["received"] == [1, 8, 8]
    assert "image" in err.value.message


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ([[[["a"]] * 8] * 8], "rectangular array of numbers"),
        ([[[[float("nan")]] * 8] * 8], "NaN"),
        ([[[[1e400]] * 8] * 8], "NaN or infinite"),
        ([[[[1.0]] * 8] * 7 + [[[1.0]] * 3]], "rectangular"),
        ([], "non-empty"),
        ("abc", "non-empty list"),
    ],
)
def test_bad_values_are_refused_with_a_reason(value, why):
    with pytest.raises(InvalidInput) as err:
        to_tensor(value, SPEC, max_batch=10)
    assert why in err.value.message


def test_batch_limit():
    with pytest.raises(InvalidInput) as err:
        to_tensor([[[[0.0]] * 8] * 8] * 11, SPEC, max_batch=10)
    assert "batch limit of 10" in err.value.message


def test_float64_becomes_float32():
    assert to_tensor([[[[1.5]] * 8] * 8], SPEC, max_batch=10).dtype == np.float32


def test_row_and_columnar_bodies_predict_the_same_labels(registry, published):
    model = ModelCache("unused", registry=registry).get("digits")
    from sklearn.datasets import load_digits

    images = load_digits().images[:5, :, :, None].tolist()
    rows = format_predictions(model, run(model, feeds_from_body({"instances": images}, model, 10)))
    cols = format_predictions(model, run(model, feeds_from_body({"inputs": {"image": images}}, model, 10)))
    assert [r["label"] for r in rows] == [c["label"] for c in cols] == ["0", "1", "2", "3", "4"]
    assert abs(sum(rows[0]["probabilities"]) - 1) < 1e-4 and rows[0]["score"] == max(rows[0]["probabilities"])


@pytest.mark.parametrize("body", [{"instances": [], "inputs": []}, {"foo": 1}, [1, 2]])
def test_envelope_must_be_tf_serving(registry, published, body):
    model = ModelCache("unused", registry=registry).get("digits")
    with pytest.raises(BadRequest):
        feeds_from_body(body, model, 10)
