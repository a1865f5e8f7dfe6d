"""The tensor checks are one set: a TF Serving body and an Open Inference request carrying the same
bad values get the same refusal."""

import numpy as np
import pytest

from maas_core.shared.dtypes import DTYPES
from maas_core.shared.errors import InvalidInput
from maas_core.shared.inference import feeds_from_body
from maas_core.shared.kserve import feeds_from_infer
from maas_core.shared.model_cache import ModelCache
from maas_core.shared.schemas import InferRequest
from maas_core.shared.tensors import numbers


@pytest.fixture
def digits(registry, published):
    return ModelCache("unused", registry=registry).get("digits")


def image(first):
    rows = [[[0.0] for _ in range(8)] for _ in range(8)]
    rows[0][0] = first
    return rows


def refusals(model, instance):
    """The InvalidInput each convention answers for one instance."""
    with pytest.raises(InvalidInput) as tf_serving:
        feeds_from_body({"instances": [instance]}, model, 8)
    request = InferRequest(inputs=[{"name": "image", "shape": [1, 8, 8, 1], "datatype": "FP64", "data": [instance]}])
    with pytest.raises(InvalidInput) as v2:
        feeds_from_infer(request, model, 8)
    return tf_serving.value, v2.value


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ([float("nan")], "contains NaN or infinite values"),
        ([1e39], "outside the range of float32"),
        (["1"], "takes numbers; it got a string"),
        ([True], "takes numbers; it got a boolean"),
        ([None], "takes numbers; it got null"),
        ([0.0, 1.0], "must be a rectangular array of numbers"),
    ],
)
def test_both_conventions_refuse_a_bad_value_in_the_same_words(digits, first, why):
    tf_serving, v2 = refusals(digits, image(first))
    assert why in tf_serving.message and tf_serving.message == v2.message
    assert tf_serving.details["received"] == v2.details["received"]


def test_both_conventions_name_a_missing_input_the_same_way(digits):
    with pytest.raises(InvalidInput) as tf_serving:
        feeds_from_body({"inputs": {"pixels": [image([0.0])]}}, digits, 8)
    request = InferRequest(inputs=[{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0.0] * 64}])
    with pytest.raises(InvalidInput) as v2:
        feeds_from_infer(request, digits, 8)
    assert tf_serving.value.details == v2.value.details
    assert v2.value.details["missing"] == ["image"] and v2.value.details["unexpected"] == ["pixels"]


@pytest.mark.parametrize(
    "value",
    [
        [[[1.0], [2.5]], [[3.0], [4.0]]],
        [[1, 2, 3]],
        [[]],
        [7],
        3.5,
        [[2**70, -1e300]],
    ],
)
def test_a_regular_nest_of_numbers_reads_as_numpy_reads_it(value):
    assert np.array_equal(numbers("x", value, DTYPES["float32"], "numbers"), np.asarray(value, dtype=np.float64))


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ([[1, 2], [3]], "rectangular"),
        ([[1, 2], 3], "rectangular"),
        ([[1, True]], "a boolean"),
        ([[1, "a"]], "string 'a'"),
        ([[None, 1]], "null"),
        ([[{"a": 1}]], "an object"),
        ([[[1.0]], [{"a": 1}]], "an object"),  # an object of one key where a one-element list belongs
        ([[[1.0]], ["b"]], "string 'b'"),
        ([[10**400]], "rectangular"),
    ],
)
def test_an_irregular_nest_is_refused_naming_what_came(value, said):
    with pytest.raises(InvalidInput) as err:
        numbers("x", value, DTYPES["float32"], "numbers")
    assert said in err.value.message + str(err.value.details)
