import numpy as np
import pytest

from maas_core.shared.errors import BadRequest, InvalidInput
from maas_core.shared.inference import feeds_from_body, format_predictions, run, to_tensor
from maas_core.shared.manifest import TensorSpec
from maas_core.shared.model_cache import ModelCache
from tests_support import verified

SPEC = TensorSpec("image", "float32", (None, 8, 8, 1))


def test_wrong_shape_names_expected_and_received():
    with pytest.raises(InvalidInput) as err:
        to_tensor([[[0.0] * 8] * 8], SPEC, max_batch=10)
    assert err.value.details["expected"] == "[None, 8, 8, 1]"
    assert err.value.details["received"] == [1, 8, 8]
    assert "image" in err.value.message


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ([[[["a"]] * 8] * 8], "takes numbers; it got a string"),
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


@pytest.mark.parametrize(
    ("leaf", "received"),
    [('"1"', "string '1'"), ("true", "a boolean"), ("null", "null"), ("{}", "an object")],
)
def test_only_json_numbers_go_where_numbers_go(leaf, received):
    """numpy would read "1" and true as 1.0 and null as NaN, and answer 200 with a made-up input."""
    import json

    value = json.loads(json.dumps([[[[0.0]] * 8] * 8]).replace("0.0", leaf, 1))
    with pytest.raises(InvalidInput) as err:
        to_tensor(value, SPEC, max_batch=10)
    assert err.value.details["received"] == received and "takes numbers" in err.value.message


@pytest.mark.parametrize(
    ("spec", "value", "why"),
    [
        (SPEC, [[[[1e39]] * 8] * 8], "outside the range of float32"),  # finite in JSON, infinite in float32
        (TensorSpec("n", "float16", (None, 1)), [[70000.0]], "outside the range of float16"),
        (TensorSpec("n", "int8", (None, 1)), [[200]], "outside the range of int8"),
        (TensorSpec("n", "int64", (None, 1)), [[1e30]], "outside the range of int64"),
    ],
)
def test_values_the_input_dtype_cannot_hold_are_refused(spec, value, why):
    with pytest.raises(InvalidInput) as err:
        to_tensor(value, spec, max_batch=10)
    assert why in err.value.message


def test_values_at_the_edge_of_the_dtype_are_kept():
    assert to_tensor([[[[3.0e38]] * 8] * 8], SPEC, max_batch=10).max() == np.float32(3.0e38)
    assert to_tensor([[127, -128]], TensorSpec("n", "int8", (None, 2)), 10).tolist() == [[127, -128]]


class NanSession:
    """An ONNX session stand-in whose second instance comes out NaN (as an overflow inside a graph does)."""

    def run(self, names, feeds):
        out = np.zeros((len(feeds["image"]), 10), dtype=np.float32)
        out[1, 3] = np.nan
        return [out]


def test_nonfinite_outputs_are_an_input_error_for_the_api_and_per_row_for_batch(make_manifest):
    from maas_core.shared.inference import nonfinite_rows
    from maas_core.shared.model_cache import LoadedModel

    model = LoadedModel("digits", "v", verified(make_manifest()), NanSession(), 0.0)
    feeds = {"image": np.zeros((3, 8, 8, 1), dtype=np.float32)}
    with pytest.raises(InvalidInput) as err:
        run(model, feeds)
    assert err.value.details["instances"] == [1] and "NaN or infinite for instance 1" in err.value.message
    assert nonfinite_rows(run(model, feeds, finite=False)) == [1]
    assert nonfinite_rows({"a": np.array([[1.0], [np.inf]]), "b": np.array([[1], [2]])}) == [1]
