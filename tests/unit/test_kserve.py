import numpy as np
import pytest

from maas_core.shared.errors import InvalidInput
from maas_core.shared.kserve import feeds_from_infer, infer_outputs, model_metadata
from maas_core.shared.model_cache import ModelCache
from maas_core.shared.schemas import InferRequest


@pytest.fixture
def digits(registry, published):
    return ModelCache("unused", registry=registry).get("digits")


def zero_digit(**changes):
    tensor = {"name": "image", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0.0] * 64}
    tensor.update(changes)
    return InferRequest(inputs=[tensor])


def test_metadata_marks_free_dimensions_as_minus_one(digits, published):
    meta = model_metadata(digits, [published.version])
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    assert meta["outputs"][0]["shape"] == [-1, 10] and meta["platform"] == "onnxruntime_onnx"


def test_flat_and_nested_data_give_the_same_tensor(digits):
    from sklearn.datasets import load_digits

    image = load_digits().images[3][:, :, None]
    flat = feeds_from_infer(zero_digit(data=image.reshape(-1).tolist()), digits, 8)["image"]
    nested = feeds_from_infer(zero_digit(data=[image.tolist()]), digits, 8)["image"]
    assert flat.dtype == np.float32 and np.array_equal(flat, nested)


def test_fp64_is_cast_to_fp32(digits):
    assert feeds_from_infer(zero_digit(datatype="FP64"), digits, 8)["image"].dtype == np.float32


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"datatype": "INT64"}, "datatype INT64"),
        ({"shape": [1, 8, 8]}, "shape [1, 8, 8]"),
        ({"data": [0.0] * 63}, "63 data elements"),
        ({"data": ["x"] * 64}, "takes numbers; it got a string"),
        ({"data": [float("nan")] * 64}, "NaN"),
        ({"shape": [9, 8, 8, 1], "data": [0.0] * 64 * 9}, "batch limit of 8"),
        ({"shape": [0, 8, 8, 1], "data": []}, "at least one instance"),
    ],
)
def test_bad_tensors_name_what_was_expected(digits, changes, why):
    with pytest.raises(InvalidInput) as err:
        feeds_from_infer(zero_digit(**changes), digits, 8)
    assert why in err.value.message


def test_missing_and_extra_inputs(digits):
    request = InferRequest(inputs=[{"name": "other", "shape": [1], "datatype": "FP32", "data": [1.0]}])
    with pytest.raises(InvalidInput) as err:
        feeds_from_infer(request, digits, 8)
    assert err.value.details["missing"] == ["image"] and err.value.details["unexpected"] == ["other"]


def test_outputs_are_flat_and_classification_gives_top_labels(digits):
    from maas_core.shared.inference import run

    request = InferRequest(
        inputs=zero_digit().inputs, outputs=[{"name": "probabilities", "parameters": {"classification": 2}}]
    )
    outputs = run(digits, feeds_from_infer(request, digits, 8))
    (tensor,), blobs = infer_outputs(request, digits, outputs)
    assert blobs == [] and tensor["datatype"] == "BYTES" and tensor["shape"] == [1, 2]
    score, index, label = tensor["data"][0].split(":")
    assert label == index and float(score) == pytest.approx(outputs["probabilities"].max(), abs=1e-6)
    (plain,), _ = infer_outputs(InferRequest(inputs=request.inputs), digits, outputs)
    assert plain["shape"] == [1, 10] and len(plain["data"]) == 10


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (["1"] * 64, "takes numbers; it got a string"),
        ([True] * 64, "takes numbers; it got a boolean"),
        ([None] * 64, "takes numbers; it got null"),
        ([1e39] * 64, "outside the range of float32"),
    ],
)
def test_data_must_be_numbers_the_datatype_can_hold(digits, data, why):
    with pytest.raises(InvalidInput) as err:
        feeds_from_infer(zero_digit(datatype="FP64", data=data), digits, 8)
    assert why in err.value.message
