"""Request bodies of the two conventions the API speaks, as pydantic models.

They shape the envelope (and the OpenAPI document); tensor checks that depend on the model
(names, shapes, dtypes) are derived from the manifest in ``shared.inference`` and ``shared.kserve``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The registry's name rules (ARCHITECTURE.md, "Registry on S3") as JSON Schema patterns, for the
# OpenAPI document and the route signatures. JSON Schema patterns are ECMA regexes, where ``$`` does
# not accept a trailing newline; pydantic checks them the same way (tests/unit/test_schemas.py keeps
# them equal to shared.layout's checks).
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ALIAS_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"
VERSION_PATTERN = r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$"
# Where a version is accepted, its number is too (1, 2, 3 ...: ARCHITECTURE.md, "Registry layout").
VERSION_REF_PATTERN = r"^([0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}|[1-9][0-9]{0,8})$"
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"


def _summary(value: Any) -> Any:
    """What a field of a request body looks like in a repr: its size, never its values."""
    if isinstance(value, list | dict | str):
        return f"<{type(value).__name__} of {len(value)}>"
    return value


class TensorBody(BaseModel):
    """A request body that carries tensors. Its repr says each field's size, not its values: Powertools'
    resolver formats the route's arguments into a debug line on every request, whatever the log level
    (0.4 ms of a 32-digit request: bench/results.md, the handler's overhead), and a client's data must never
    reach a log (ARCHITECTURE.md, Serving rules: logs and traces)."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, _summary(value)


class PredictRequest(TensorBody):
    """TensorFlow Serving REST body: exactly one of ``instances`` (rows) or ``inputs`` (columns)."""

    model_config = ConfigDict(extra="forbid")

    instances: list[Any] | None = Field(default=None, description="row format: one entry per instance")
    inputs: Any = Field(default=None, description="columnar format: a tensor, or an object of named tensors")
    signature_name: str | None = Field(default=None, description="accepted for compatibility; ignored")
    top_k: int | None = Field(default=None, ge=1, le=1000, description="classifiers: also return the k best labels")


class InferInputTensor(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    shape: list[int] = Field(min_length=1, max_length=16)
    datatype: str = Field(description="BOOL, UINT8, INT8, INT32, INT64, FP16, FP32 or FP64")
    data: list[Any] = Field(description="row-major, flat or nested")
    parameters: dict[str, Any] | None = None


class InferRequestedOutput(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    parameters: dict[str, Any] | None = Field(
        default=None, description='{"classification": k} returns the k best classes as "score:index:label" strings'
    )


class InferRequest(TensorBody):
    """Open Inference Protocol (KServe v2) inference request, JSON tensor data."""

    id: str | None = Field(default=None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[InferInputTensor] = Field(min_length=1, max_length=64)
    outputs: list[InferRequestedOutput] | None = None


class JobRequest(BaseModel):
    """A batch job for an input too large for a synchronous request."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["jsonl", "csv", "npy"] = Field(default="jsonl", description="format of the file you will upload")
    alias: str | None = Field(
        default=None, pattern=ALIAS_PATTERN, description="alias that scores it (default production)"
    )
    version: str | None = Field(
        default=None, pattern=VERSION_REF_PATTERN, description="exact version or version number (overrides alias)"
    )


class ErrorBody(BaseModel):
    """Every error the API answers (TF Serving's ``error`` string plus a stable ``code``)."""

    error: str = Field(description="what went wrong, what was expected and what came")
    code: str = Field(description="stable error code, e.g. invalid_input, model_not_found, registry_unavailable")
    details: dict[str, Any] | None = Field(default=None, description="the input, expected and received values")


ERROR_STATUSES = {
    400: "bad_request (body not JSON, base64 that does not decode), invalid_input (tensor names, dtype, shape, "
    "range, batch limit) or invalid_name (model, alias, version or job id)",
    404: "model_not_found, version_not_found, alias_not_found or job_not_found",
    413: "payload_too_large: the body is over MAX_BODY_BYTES",
    415: "unsupported_media_type: send application/json",
    422: "invalid_request: the envelope or a query parameter does not match the route's schema",
    503: "registry_unavailable, model_integrity_error or model_load_failed: a dependency failed; retry",
}


def error_responses(*statuses: int, success: int = 200) -> dict[int, Any]:
    """OpenAPI ``responses`` for a Powertools route: its success status (content from the return
    annotation) and the error statuses it can answer, each with the ErrorBody schema."""
    responses: dict[int, dict[str, Any]] = {success: {"description": "Successful Response"}}
    for status in statuses:
        responses[status] = {
            "description": ERROR_STATUSES[status],
            "content": {"application/json": {"model": ErrorBody}},
        }
    return responses
