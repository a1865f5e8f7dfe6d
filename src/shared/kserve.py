"""Open Inference Protocol (KServe v2) tensors: metadata, typed JSON inputs and outputs.

Inputs are checked against the manifest: every model input present once and nothing else, the
datatype the model declares (FP64 is accepted and cast where the model wants FP32), a shape that
fits the declared one, and as many data elements as the shape holds.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from shared.errors import InvalidInput
from shared.inference import NUMPY_DTYPES, cast_in_range, check_batch, check_numbers, shape_str, token_ids
from shared.model_cache import LoadedModel
from shared.model_check import graph_input
from shared.schemas import InferRequest, InferRequestedOutput

V2_DATATYPES = {
    "float32": "FP32",
    "float64": "FP64",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "int8": "INT8",
    "uint8": "UINT8",
    "bool": "BOOL",
    "string": "BYTES",
}
FROM_V2 = {v: k for k, v in V2_DATATYPES.items()}
PLATFORM = "onnxruntime_onnx"


def _v2_shape(shape: list[int | None]) -> list[int]:
    return [-1 if d is None else d for d in shape]


def tensor_metadata(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": s["name"], "datatype": V2_DATATYPES[s["dtype"]], "shape": _v2_shape(s["shape"])} for s in specs]


def model_metadata(model: LoadedModel, versions: list[str]) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": tensor_metadata(model.manifest["inputs"]),
        "outputs": tensor_metadata(model.manifest["outputs"]),
    }


def _accepts(declared: str, received: str) -> bool:
    return declared == received or (declared in ("FP32", "FP16") and received in ("FP64", "FP32", "FP16"))


def feeds_from_infer(request: InferRequest, model: LoadedModel, max_batch: int) -> dict[str, np.ndarray]:
    specs = {s["name"]: s for s in model.manifest["inputs"]}
    names = [t.name for t in request.inputs]
    missing, extra = sorted(set(specs) - set(names)), sorted(set(names) - set(specs))
    if missing or extra or len(names) != len(set(names)):
        raise InvalidInput(
            "inputs must name each model input exactly once",
            expected=sorted(specs),
            received=names,
            missing=missing,
            unexpected=extra,
        )
    feeds: dict[str, np.ndarray] = {}
    for tensor in request.inputs:
        spec = specs[tensor.name]
        declared = V2_DATATYPES[spec["dtype"]]
        if not _accepts(declared, tensor.datatype):
            raise InvalidInput(
                f"input {tensor.name!r} has datatype {tensor.datatype}; the model takes {declared}",
                input=tensor.name,
                expected=declared,
                received=tensor.datatype,
            )
        shape, want = tensor.shape, spec["shape"]
        if len(shape) != len(want) or any(d is not None and d != s for d, s in zip(want, shape, strict=False)):
            raise InvalidInput(
                f"input {tensor.name!r} has shape {shape}; expected {shape_str(want)}",
                input=tensor.name,
                expected=_v2_shape(want),
                received=shape,
            )
        if any(s < 0 for s in shape) or (shape and shape[0] == 0):
            raise InvalidInput(f"input {tensor.name!r} needs at least one instance", input=tensor.name, received=shape)
        check_batch(tensor.name, shape[0], max_batch)
        if spec.get("tokenizer"):
            if len(shape) != 1:
                raise InvalidInput(f"input {tensor.name!r} takes one string per instance", input=tensor.name)
            data = tensor.data
            if len(data) != shape[0]:
                raise InvalidInput(
                    f"input {tensor.name!r} has {len(data)} data elements; shape {shape} holds {shape[0]}",
                    input=tensor.name,
                    expected=shape[0],
                    received=len(data),
                )
            feeds[graph_input(spec)] = token_ids(data, spec, model.tokenizer(spec), max_batch)
            continue
        target = NUMPY_DTYPES[spec["dtype"]]
        check_numbers(tensor.name, tensor.data, target, declared)
        try:
            flat = np.asarray(tensor.data, dtype=np.bool_ if target == np.bool_ else np.float64).reshape(-1)
        except (ValueError, TypeError, OverflowError):
            raise InvalidInput(
                f"input {tensor.name!r} data must be numbers (flat or nested)",
                input=tensor.name,
                expected=declared,
                received="ragged or non-numeric data",
            ) from None
        if flat.size != math.prod(shape):
            raise InvalidInput(
                f"input {tensor.name!r} has {flat.size} data elements; shape {shape} holds {math.prod(shape)}",
                input=tensor.name,
                expected=math.prod(shape),
                received=int(flat.size),
            )
        if flat.dtype == np.float64 and not np.isfinite(flat).all():
            raise InvalidInput(
                f"input {tensor.name!r} contains NaN or infinite values",
                input=tensor.name,
                expected="finite numbers",
                received="NaN or Infinity",
            )
        if np.issubdtype(target, np.integer) and not np.all(np.mod(flat, 1) == 0):
            raise InvalidInput(f"input {tensor.name!r} expects integers", input=tensor.name, expected=declared)
        feeds[tensor.name] = cast_in_range(tensor.name, flat, target).reshape(shape)
    if len({len(a) for a in feeds.values()}) > 1:
        raise InvalidInput(
            "all inputs must have the same number of instances", received={k: len(v) for k, v in feeds.items()}
        )
    return feeds


def _classification(model: LoadedModel, values: np.ndarray, k: int) -> dict[str, Any]:
    labels = model.labels or []
    rows = []
    for row in values.reshape(len(values), -1):
        best = np.argsort(-row)[:k]
        rows.append([f"{row[i]:.6f}:{i}:{labels[i] if i < len(labels) else i}" for i in best])
    return {
        "shape": [len(values), min(k, values.reshape(len(values), -1).shape[1])],
        "datatype": "BYTES",
        "data": [s for r in rows for s in r],
    }


def infer_outputs(request: InferRequest, model: LoadedModel, outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Flat, row-major output tensors; the requested ones only, when the request names any."""
    declared = {o["name"]: o for o in model.manifest["outputs"]}
    wanted: list[InferRequestedOutput | None] = list(request.outputs or []) or [None]
    result = []
    for requested in wanted:
        names = [requested.name] if requested else list(declared)
        for name in names:
            if name not in declared:
                raise InvalidInput(f"model has no output {name!r}", expected=sorted(declared), received=name)
            values = outputs[name]
            k = (requested.parameters or {}).get("classification") if requested else None
            if k is not None:
                if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                    raise InvalidInput("classification must be a positive integer", received=k)
                result.append({"name": name, **_classification(model, values, k)})
                continue
            result.append(
                {
                    "name": name,
                    "shape": list(values.shape),
                    "datatype": V2_DATATYPES.get(str(values.dtype), "FP32"),
                    "data": values.reshape(-1).tolist(),
                }
            )
    return result
