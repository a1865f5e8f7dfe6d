"""The one dtype table agrees with ONNX, onnxruntime and numpy, and the one graph reader uses it."""

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from maas_core.shared.dtypes import DTYPES, V2_DATATYPES
from maas_core.shared.errors import ModelRejected
from maas_core.shared.manifest import SCHEMA_VERSION, Manifest, TensorSpec, graph_tensors, manifest_from_graph
from tests_support import serialized


def identity(elem_type: int) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", elem_type, ["batch", 3])],
        [helper.make_tensor_value_info("y", elem_type, ["batch", 3])],
    )
    return serialized(graph)


def onnx_type(name: str) -> int:
    return TensorProto.STRING if name == "string" else helper.np_dtype_to_tensor_dtype(np.dtype(name))


@pytest.mark.parametrize("name", list(DTYPES))
def test_every_manifest_dtype_reads_back_from_a_graph_and_feeds_onnxruntime(name):
    model = identity(onnx_type(name))
    inputs, outputs = graph_tensors(model)
    assert inputs == [TensorSpec("x", name, (None, 3))]
    assert outputs == [TensorSpec("y", name, (None, 3))]
    assert inputs[0].to_json() == {"name": "x", "dtype": name, "shape": [None, 3]}
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == DTYPES[name].ort
    if DTYPES[name].numpy is not None:  # what a JSON body is cast to is what onnxruntime takes
        (out,) = session.run(None, {"x": np.zeros((2, 3), dtype=DTYPES[name].numpy)})
        assert out.dtype == np.dtype(DTYPES[name].numpy)


def test_open_inference_datatypes_are_the_protocols_names():
    assert V2_DATATYPES == {
        "float32": "FP32",
        "float64": "FP64",
        "int64": "INT64",
        "int32": "INT32",
        "string": "BYTES",
        "bool": "BOOL",
        "float16": "FP16",
        "uint8": "UINT8",
        "int8": "INT8",
    }


def test_a_graph_type_maas_cannot_serve_is_refused_by_name():
    with pytest.raises(ModelRejected) as err:
        graph_tensors(identity(TensorProto.UINT16))
    assert "'x' has type tensor(uint16)" in err.value.message


def test_a_file_onnxruntime_cannot_load_is_refused():
    with pytest.raises(ModelRejected, match="cannot load the model"):
        graph_tensors(b"not a model")


def test_a_manifest_read_from_a_graph_verifies_once_the_registry_adds_its_fields(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(identity(TensorProto.FLOAT))
    manifest = manifest_from_graph(
        path,
        task="regression",
        labels=None,
        preprocessing={},
        compression={},
        metrics={},
        training_job={},
        framework={},
    )
    body = manifest.to_json()
    assert body["schema_version"] == SCHEMA_VERSION and "labels" not in body
    body |= {"name": "m", "version": "v", "artifact": {"sha256": "0" * 64, "size_bytes": 1}}
    assert Manifest.from_json(body).to_json() == body
