"""The binary tensor data extension of the Open Inference Protocol (KServe v2, Triton), both ways.

A binary request's body is a JSON header of ``Inference-Header-Content-Length`` bytes, then the raw
bytes of each input that names ``parameters.binary_data_size``, in input order: row-major,
little-endian, BOOL one byte per element, BYTES each element as a 4-byte little-endian length and
its bytes. A binary response has the same shape; it is sent only for outputs the client asked
binary (``binary_data_output`` on the request, or ``binary_data`` on an output). ARCHITECTURE.md,
"Serving rules": a body that does not add up is 400 ``invalid_input`` saying what came.

API Gateway (REST) hands Lambda such a body base64-encoded (the API's BinaryMediaTypes), and sends a
response marked ``isBase64Encoded`` to the client as bytes.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from aws_lambda_powertools.event_handler import Response

from maas_core.shared.dtypes import DTYPES
from maas_core.shared.errors import BadRequest, InvalidInput, PayloadTooLarge

HEADER = "Inference-Header-Content-Length"
MEDIA_TYPE = "application/octet-stream"
# The API's BinaryMediaTypes (templates/serving.yaml; tests/unit/test_template_serving.py keeps them
# equal): what API Gateway hands Lambda base64, and the Accept types it turns a base64 answer into
# bytes for. The kserve SDK sends application/octet-stream; tritonclient.http sends no Content-Type
# and no Accept, which API Gateway reads as application/json (JSON bodies then come base64 too, and
# shared.http decodes them).
BINARY_MEDIA_TYPES = ("application/octet-stream", "application/json")
# Open Inference datatype -> little-endian numpy type of one element (BYTES is length-prefixed, apart).
NUMPY = {d.v2: np.dtype(d.name).newbyteorder("<") for d in DTYPES.values() if d.json != "string"}
_LENGTH = struct.Struct("<I")


def header_length(headers: dict[str, Any] | None) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == HEADER.lower():
            return str(value)
    return None


def delivered_as_bytes(headers: dict[str, Any] | None) -> bool:
    """Whether API Gateway passes a base64 answer to this client as bytes: its first Accept media type
    (none: application/json) is one of BINARY_MEDIA_TYPES. Otherwise the client would get base64 text,
    so outputs asked binary are answered as JSON, which the protocol's clients read as well."""
    accept = next((str(v) for k, v in (headers or {}).items() if k.lower() == "accept"), "")
    first = accept.split(",")[0].split(";")[0].strip().lower() or "application/json"
    return any(fnmatch.fnmatchcase(first, pattern) for pattern in BINARY_MEDIA_TYPES)


def unpack_event(event: dict[str, Any], max_bytes: int) -> dict[int, bytes] | None:
    """For a request in the binary extension, each binary input's bytes by its index in ``inputs``;
    the event's body becomes the JSON header alone (each binary input with empty ``data``), so the
    route reads it as any JSON request. None, and the event untouched, for a plain JSON request."""
    declared = header_length(event.get("headers"))
    if declared is None:
        return None
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("request body is marked base64 but does not decode") from None
    else:
        raw = body.encode("utf-8", "surrogateescape")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"request body is {len(raw)} bytes; the limit is {max_bytes}", limit_bytes=max_bytes, received=len(raw)
        )
    header, tensors = unpack(raw, declared)
    event["body"], event["isBase64Encoded"] = json.dumps(header), False
    for field in ("headers", "multiValueHeaders"):
        headers = event.get(field) or {}
        for key in [k for k in headers if k.lower() == "content-type"]:
            del headers[key]
        if field in event and event[field] is not None:
            headers["Content-Type"] = ["application/json"] if field == "multiValueHeaders" else "application/json"
    return tensors


def unpack(raw: bytes, declared: str) -> tuple[dict[str, Any], dict[int, bytes]]:
    """The JSON header and each binary input's bytes (by input index), every size checked."""
    if not (declared.strip().isascii() and declared.strip().isdigit()):  # "²" is a digit to str.isdigit
        raise InvalidInput(f"{HEADER} must be a byte count", expected="a non-negative integer", received=declared[:32])
    length = int(declared)
    if length > len(raw):
        raise InvalidInput(
            f"{HEADER} is {length} bytes but the body has only {len(raw)}", expected=f"<= {len(raw)}", received=length
        )
    try:
        header = json.loads(raw[:length])
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest(f"the first {length} bytes of the body ({HEADER}) are not JSON", expected="JSON") from None
    inputs = header.get("inputs") if isinstance(header, dict) else None
    if not isinstance(inputs, list):
        raise BadRequest("the JSON header needs an inputs list", expected="JSON object with inputs")
    tensors: dict[int, bytes] = {}
    offset = length
    for index, tensor in enumerate(inputs):
        size = _binary_size(tensor)
        if size is None:
            continue
        name = tensor.get("name")
        if "data" in tensor:
            raise InvalidInput(f"input {name!r} has both data and binary_data_size", input=name)
        if offset + size > len(raw):
            raise InvalidInput(
                f"input {name!r} declares {size} bytes of binary data; only {len(raw) - offset} are left in the body",
                input=name,
                expected=size,
                received=len(raw) - offset,
            )
        tensors[index] = raw[offset : offset + size]
        tensor["data"] = []
        offset += size
    if offset != len(raw):
        raise InvalidInput(
            f"the body has {len(raw) - offset} bytes after the header and the binary inputs it declares",
            expected=offset,
            received=len(raw),
        )
    return header, tensors


def _binary_size(tensor: Any) -> int | None:
    parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput("binary_data_size must be a byte count", expected="a non-negative integer", received=size)
    return size


def decode(name: str, raw: bytes, datatype: str, shape: Sequence[int]) -> np.ndarray | list[str]:
    """One input's bytes as a flat array of its datatype, refused unless they are exactly the bytes
    its shape holds; BYTES as a list of UTF-8 strings (their count is checked as JSON data's is)."""
    if datatype == "BYTES":
        return _split_bytes(name, raw)
    count = math.prod(shape)
    element = NUMPY.get(datatype)
    if element is None:
        raise InvalidInput(f"input {name!r}: no binary form for datatype {datatype}", input=name, received=datatype)
    if len(raw) != count * element.itemsize:
        raise InvalidInput(
            f"input {name!r} has {len(raw)} bytes of binary data; shape {list(shape)} of {datatype} takes "
            f"{count * element.itemsize}",
            input=name,
            expected=count * element.itemsize,
            received=len(raw),
        )
    flat = np.frombuffer(raw, dtype=element)
    # Floats as float64, as JSON numbers come: the shared checks then refuse NaN and infinities by name.
    return flat.astype(np.float64) if flat.dtype.kind == "f" else flat.astype(element.newbyteorder("="))


def _split_bytes(name: str, raw: bytes) -> list[str]:
    strings, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidInput(f"input {name!r}: a BYTES element's 4-byte length is cut short", input=name)
        (size,) = _LENGTH.unpack_from(raw, offset)
        start, offset = offset + 4, offset + 4 + size
        if offset > len(raw):
            raise InvalidInput(
                f"input {name!r}: a BYTES element declares {size} bytes; {len(raw) - start} are left",
                input=name,
                expected=size,
                received=len(raw) - start,
            )
        try:
            strings.append(raw[start:offset].decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(f"input {name!r} takes UTF-8 text", input=name, expected="UTF-8") from None
    return strings


def encode(values: np.ndarray | Sequence[str]) -> bytes:
    """An output's bytes: little-endian row-major numbers, or length-prefixed UTF-8 strings."""
    if isinstance(values, np.ndarray) and values.dtype.kind not in "OUS":
        return values.astype(values.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
    parts = [str(v).encode() for v in (values.reshape(-1).tolist() if isinstance(values, np.ndarray) else values)]
    return b"".join(_LENGTH.pack(len(p)) + p for p in parts)


def response(body: dict[str, Any], blobs: list[bytes]) -> Response:
    """The JSON header and the outputs' bytes in one body (base64 on the way to API Gateway)."""
    header = json.dumps(body, separators=(",", ":")).encode()
    return Response(
        status_code=200,
        content_type=MEDIA_TYPE,
        body=header + b"".join(blobs),
        headers={HEADER: str(len(header))},
    )
