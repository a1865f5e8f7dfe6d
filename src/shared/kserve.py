"""Open Inference Protocol (KServe v2) tensors: metadata, typed inputs and outputs, as JSON or in
the binary tensor data extension (``shared.binary_tensors``).

Inputs are checked against the manifest: every model input present once and nothing else, the
datatype the model declares (FP64 is accepted and cast where the model wants FP32), a shape that
fits the declared one, and as many data elements (or bytes) as the shape holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from maas_core.shared import binary_tensors
from maas_core.shared.dtypes import DTYPES, V2_ACCEPTS, V2_DATATYPES
from maas_core.shared.errors import InvalidInput
from maas_core.shared.manifest import TensorSpec
from maas_core.shared.model_cache import LoadedModel
from maas_core.shared.schemas import InferRequest, InferRequestedOutput
from maas_core.shared.tensors import check_batch, check_names, check_same_count, check_shape, numbers, token_ids, typed

PLATFORM = "onnxruntime_onnx"


def _v2_shape(shape: Sequence[int | None]) -> list[int]:
    return [-1 if d is None else d for d in shape]


def tensor_metadata(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
    return [{"name": s.name, "datatype": V2_DATATYPES[s.dtype], "shape": _v2_shape(s.shape)} for s in specs]


def model_metadata(model: LoadedModel, versions: list[str]) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": tensor_metadata(model.manifest.inputs),
        "outputs": tensor_metadata(model.manifest.outputs),
    }


def feeds_from_infer(
    request: InferRequest, model: LoadedModel, max_batch: int, binary: dict[int, bytes] | None = None
) -> dict[str, np.ndarray]:
    """An Open Inference request's input tensors as feeds keyed by graph input. The checks live in
    ``shared.tensors``; this only reads the v2 envelope (datatype, shape, flat or nested data, or
    the bytes of ``binary``: an input's index in ``inputs`` -> its binary tensor data)."""
    specs = {s.name: s for s in model.manifest.inputs}
    check_names([t.name for t in request.inputs], model.manifest.inputs)
    feeds: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        spec = specs[tensor.name]
        dtype = DTYPES[spec.dtype]
        if tensor.datatype not in V2_ACCEPTS[dtype.v2]:
            raise InvalidInput(
                f"input {tensor.name!r} has datatype {tensor.datatype}; the model takes {dtype.v2}",
                input=tensor.name,
                expected=dtype.v2,
                received=tensor.datatype,
            )
        shape = tensor.shape
        check_shape(tensor.name, shape, spec.shape, expected=_v2_shape(spec.shape))
        if any(s < 0 for s in shape) or (shape and shape[0] == 0):
            raise InvalidInput(f"input {tensor.name!r} needs at least one instance", input=tensor.name, received=shape)
        check_batch(tensor.name, shape[0], max_batch)
        raw = (binary or {}).get(index)
        values = tensor.data if raw is None else binary_tensors.decode(tensor.name, raw, tensor.datatype, shape)
        if spec.tokenizer is not None:
            if len(shape) != 1:
                raise InvalidInput(f"input {tensor.name!r} takes one string per instance", input=tensor.name)
            _check_size(tensor.name, len(values), shape)
            feeds[spec.graph_input] = token_ids(list(values), spec, model.tokenizer(spec), max_batch)
            continue
        if not isinstance(values, np.ndarray):
            values = numbers(tensor.name, values, dtype, dtype.v2)
        flat = values.reshape(-1)
        _check_size(tensor.name, int(flat.size), shape)
        feeds[tensor.name] = typed(tensor.name, flat, dtype, dtype.v2).reshape(shape)
    check_same_count(feeds)
    return feeds


def _check_size(name: str, size: int, shape: list[int]) -> None:
    """v2 sends a shape and its data apart: the data must fill the shape exactly."""
    if size != math.prod(shape):
        raise InvalidInput(
            f"input {name!r} has {size} data elements; shape {shape} holds {math.prod(shape)}",
            input=name,
            expected=math.prod(shape),
            received=size,
        )


def _classification(model: LoadedModel, values: np.ndarray, k: int) -> dict[str, Any]:
    labels = model.labels or ()
    rows = []
    for row in values.reshape(len(values), -1):
        best = np.argsort(-row)[:k]
        rows.append([f"{row[i]:.6f}:{i}:{labels[i] if i < len(labels) else i}" for i in best])
    return {
        "shape": [len(values), min(k, values.reshape(len(values), -1).shape[1])],
        "datatype": "BYTES",
        "data": [s for r in rows for s in r],
    }


def _flag(parameters: dict[str, Any] | None, key: str, default: bool) -> bool:
    value = (parameters or {}).get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{key} must be true or false", expected="a boolean", received=repr(value)[:40])
    return value


def infer_outputs(
    request: InferRequest, model: LoadedModel, outputs: dict[str, np.ndarray], binary: bool = True
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Flat, row-major output tensors; the requested ones only, when the request names any. An
    output asked in binary (``binary_data_output`` on the request, ``binary_data`` on the output)
    carries ``parameters.binary_data_size`` instead of ``data``, unless ``binary`` is False (the
    client could not receive bytes); its bytes are in the second list, in output order."""
    declared = {o.name: o for o in model.manifest.outputs}
    all_binary = _flag(request.parameters, "binary_data_output", False)
    wanted: list[InferRequestedOutput | None] = list(request.outputs or []) or [None]
    result, blobs = [], []
    for requested in wanted:
        names = [requested.name] if requested else list(declared)
        in_binary = _flag(requested.parameters if requested else None, "binary_data", all_binary)
        for name in names:
            if name not in declared:
                raise InvalidInput(f"model has no output {name!r}", expected=sorted(declared), received=name)
            values = outputs[name]
            k = (requested.parameters or {}).get("classification") if requested else None
            if k is not None:
                if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                    raise InvalidInput("classification must be a positive integer", received=k)
                tensor = {"name": name, **_classification(model, values, k)}
            else:
                tensor = {
                    "name": name,
                    "shape": list(values.shape),
                    "datatype": V2_DATATYPES.get(str(values.dtype), "FP32"),
                    "data": values.reshape(-1),
                }
            data = tensor.pop("data")
            if in_binary and binary:
                blobs.append(binary_tensors.encode(data))
                tensor["parameters"] = {"binary_data_size": len(blobs[-1])}
            else:
                tensor["data"] = data.tolist() if isinstance(data, np.ndarray) else data
            result.append(tensor)
    return result, blobs
