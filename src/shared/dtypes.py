"""The one dtype table: a manifest dtype (ARCHITECTURE.md, "Manifest") and what it is called in
ONNX, onnxruntime, numpy, the Open Inference Protocol, TensorFlow Serving's metadata and JSON.

Every module that names a tensor type looks it up here; adding a dtype is one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class DType:
    name: str  # the manifest's spelling (numpy's dtype name)
    ort: str  # the ONNX tensor type as onnxruntime's NodeArg.type spells it
    v2: str  # Open Inference Protocol (KServe v2) datatype
    json: str  # the JSON value one element is sent as
    tf: str  # TensorFlow's DataType name, as TF Serving's signature_def spells it

    @cached_property
    def numpy(self) -> Any:
        """What JSON numbers are cast to (numpy's type of this name); None: not built from JSON numbers
        (text goes through its tokenizer). Resolved on first use: reading a manifest (the CLI, the
        family table) needs no numpy."""
        if self.json == "string":
            return None
        import numpy as np

        return np.dtype(self.name).type


# In the order manifest errors list the allowed dtypes.
_TABLE = (
    DType("float32", "tensor(float)", "FP32", "number", "DT_FLOAT"),
    DType("float64", "tensor(double)", "FP64", "number", "DT_DOUBLE"),
    DType("int64", "tensor(int64)", "INT64", "integer", "DT_INT64"),
    DType("int32", "tensor(int32)", "INT32", "integer", "DT_INT32"),
    DType("string", "tensor(string)", "BYTES", "string", "DT_STRING"),
    DType("bool", "tensor(bool)", "BOOL", "boolean", "DT_BOOL"),
    DType("float16", "tensor(float16)", "FP16", "number", "DT_HALF"),
    DType("uint8", "tensor(uint8)", "UINT8", "integer", "DT_UINT8"),
    DType("int8", "tensor(int8)", "INT8", "integer", "DT_INT8"),
)

DTYPES: dict[str, DType] = {d.name: d for d in _TABLE}
BY_ORT: dict[str, DType] = {d.ort: d for d in _TABLE}
V2_DATATYPES: dict[str, str] = {d.name: d.v2 for d in _TABLE}

# Open Inference datatypes a request may send for a model input of the key's datatype: a float
# input takes any float width (JSON numbers are float64 anyway, and are range-checked on the cast).
V2_ACCEPTS: dict[str, frozenset[str]] = {
    d.v2: frozenset({"FP64", "FP32", "FP16"}) if d.v2 in ("FP32", "FP16") else frozenset({d.v2}) for d in _TABLE
}
