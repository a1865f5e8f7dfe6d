"""TensorFlow Serving's REST API and KServe v1 on /v1/models (ARCHITECTURE.md, "Serving": the TF
Serving REST body; issue 18): their request bodies read into the inference core's checks
(``shared.inference``), and their exact answers (no label/score extras: those stay on /models).

Only the envelopes are translated here: ``{"b64": ...}`` values of string inputs, the
list-of-objects row form, ``signature_name``, classify/regress ``examples``, model status and
``signature_def`` metadata. Every tensor check is ``shared.tensors``'.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field

from maas_core.shared.dtypes import DTYPES
from maas_core.shared.errors import BadRequest, InvalidInput, MaasError
from maas_core.shared.inference import feeds_from_body
from maas_core.shared.manifest import CLASSIFICATION, REGRESSION, TensorSpec
from maas_core.shared.model_cache import LoadedModel
from maas_core.shared.schemas import TensorBody
from maas_core.shared.tensors import check_names

SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
# TensorFlow's DataType names (types.proto) of the manifest dtypes (shared.dtypes).


class RouteNotFound(MaasError):
    """A /v1/models path with a verb this API does not serve (``:explain``)."""

    status = 404
    code = "route_not_found"


class TFRequest(TensorBody):
    """A TF Serving (and KServe v1) request body: predict takes ``instances`` (rows) or ``inputs``
    (columns); classify and regress take ``examples`` (objects keyed by input name) and ``context``
    (what every example shares)."""

    model_config = ConfigDict(extra="forbid")

    signature_name: str | None = Field(default=None, description=f"{SIGNATURE!r} (the only signature served)")
    instances: list[Any] | None = Field(default=None, description="predict, row format: one entry per instance")
    inputs: Any = Field(default=None, description="predict, columnar format: a tensor, or an object of named tensors")
    context: dict[str, Any] | None = Field(default=None, description="classify/regress: features every example shares")
    examples: list[dict[str, Any]] | None = Field(
        default=None, description="classify/regress: one object per example, keyed by input name"
    )


def signatures(verb: str) -> tuple[str, ...]:
    """The signature names a verb answers: ``serving_default``, and for classify and regress the
    method's own (``tensorflow/serving/regress``, as TF Serving's REST reference sends it)."""
    return (SIGNATURE,) if verb == "predict" else (SIGNATURE, f"tensorflow/serving/{verb}")


def check_signature(signature_name: str | None, verb: str = "predict") -> None:
    served = signatures(verb)
    if signature_name and signature_name not in served:
        raise BadRequest(
            f"Serving signature name: {signature_name!r} not found in signature def; :{verb} serves "
            + " or ".join(repr(s) for s in served),
            expected=list(served),
            received=signature_name[:64],
        )


def _decode_b64(name: str, value: Any) -> Any:
    """A string input's value with ``{"b64": ...}`` objects decoded to text (TF Serving's binary form)."""
    if isinstance(value, list):
        return [_decode_b64(name, v) for v in value]
    if isinstance(value, dict) and list(value) == ["b64"] and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise InvalidInput(
                f"input {name!r}: a b64 value must be base64 of UTF-8 text",
                input=name,
                expected='{"b64": "<base64 of UTF-8 text>"}',
                received=value["b64"][:40],
            ) from None
    return value


def _strings_decoded(specs: Sequence[TensorSpec], named: dict[str, Any]) -> dict[str, Any]:
    text = {s.name for s in specs if s.dtype == "string"}
    return {k: _decode_b64(k, v) if k in text else v for k, v in named.items()}


def _rows(instances: list[Any], specs: Sequence[TensorSpec]) -> list[Any]:
    """Rows with b64 decoded; a one-input model's list-of-objects rows become its plain values."""
    if len(specs) == 1 and specs[0].dtype == "string":
        instances = _decode_b64(specs[0].name, instances)  # {"b64": ...} is a value, not a row of named inputs
    if instances and all(isinstance(i, dict) for i in instances):
        instances = [_strings_decoded(specs, i) for i in instances]
        if len(specs) == 1:
            for instance in instances:
                check_names(list(instance), specs)
            return [i[specs[0].name] for i in instances]
    return instances


def feeds(body: TFRequest, model: LoadedModel, max_batch: int) -> dict[str, np.ndarray]:
    """The feeds of a predict body, checked by the inference core."""
    check_signature(body.signature_name)
    specs = model.manifest.inputs
    request = body.model_dump(exclude_none=True, exclude={"signature_name"})
    misplaced = sorted({"context", "examples"} & set(request))
    if misplaced and ("instances" in request or "inputs" in request):
        raise BadRequest(
            f"predict takes 'instances' or 'inputs'; {misplaced[0]!r} is for classify and regress",
            expected=["instances", "inputs"],
            received=misplaced,
        )
    if isinstance(request.get("instances"), list):
        request["instances"] = _rows(request["instances"], specs)
    elif isinstance(request.get("inputs"), dict):
        request["inputs"] = _strings_decoded(specs, request["inputs"])
    elif "inputs" in request and len(specs) == 1 and specs[0].dtype == "string":
        request["inputs"] = _decode_b64(specs[0].name, request["inputs"])
    return feeds_from_body(request, model, max_batch)


def predictions(outputs: dict[str, np.ndarray], columnar: bool) -> dict[str, Any]:
    """TF Serving's answer: one output as its plain values (per instance, or the whole tensor),
    several as objects keyed by output name."""
    if columnar:
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {name: value.tolist() for name, value in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    rows = len(next(iter(outputs.values())))
    return {"predictions": [{name: value[i].tolist() for name, value in outputs.items()} for i in range(rows)]}


def check_task(model: LoadedModel, verb: str) -> None:
    """classify serves classification models, regress regression ones: the other is a 400 naming its task."""
    wanted = CLASSIFICATION if verb == "classify" else REGRESSION
    if model.task != wanted:
        other = "regress" if verb == "classify" else "classify"
        raise BadRequest(
            f"model {model.name!r} is a {model.task} model; :{verb} serves {wanted} models (use :{other} or :predict)",
            expected=wanted,
            received=model.task,
        )


def example_feeds(body: TFRequest, model: LoadedModel, max_batch: int) -> dict[str, np.ndarray]:
    """classify/regress ``examples`` (each with ``context`` merged in) as list-of-objects rows."""
    if not body.examples or body.instances is not None or body.inputs is not None:
        raise BadRequest(
            "classify and regress take 'examples': a non-empty list of objects keyed by input name",
            expected=["examples", "context"],
            received=sorted(body.model_dump(exclude_none=True))[:10],
        )
    context = body.context or {}
    repeated = sorted({key for example in body.examples for key in example} & set(context))
    if repeated:
        raise BadRequest(
            f"feature {repeated[0]!r} is in 'context' and in an example; a feature must be in one of them",
            received=repeated[:20],
        )
    rows: list[Any] = [{**context, **example} for example in body.examples]
    return feeds(TFRequest(instances=rows), model, max_batch)


def results(model: LoadedModel, outputs: dict[str, np.ndarray], verb: str) -> dict[str, Any]:
    """classify: per example its [label, score] pairs, in label order; regress: per example one float."""
    values = outputs[model.manifest.outputs[0].name]
    flat = values.reshape(len(values), -1)
    if verb == "classify":
        labels = model.labels or ()
        names = [labels[j] if j < len(labels) else str(j) for j in range(flat.shape[1])]
        return {"results": [[[names[j], float(row[j])] for j in range(len(row))] for row in flat]}
    if flat.shape[1] != 1:
        raise BadRequest(
            f"model {model.name!r} gives {flat.shape[1]} values per example; :regress needs one (use :predict)",
            expected=1,
            received=int(flat.shape[1]),
        )
    return {"results": [float(v) for v in flat[:, 0]]}


def model_status(name: str, numbers: Sequence[int], ready: bool) -> dict[str, Any]:
    """TF Serving's ``model_version_status`` and KServe v1's ``{"name", "ready"}`` in one body."""
    available = {"state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    return {
        "name": name,
        "ready": ready,
        "model_version_status": [{"version": str(n), **available} for n in sorted(numbers, reverse=True)],
    }


def _tensor_info(spec: TensorSpec) -> dict[str, Any]:
    dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape]
    return {
        "dtype": DTYPES[spec.dtype].tf,
        "tensor_shape": {"dim": dims, "unknown_rank": False},
        "name": f"{spec.name}:0",
    }


def metadata(model: LoadedModel, number: int | None) -> dict[str, Any]:
    """TF Serving's GetModelMetadata answer: the ``serving_default`` signature_def from the manifest."""
    manifest = model.manifest
    tensors = {
        "inputs": {s.name: _tensor_info(s) for s in manifest.inputs},
        "outputs": {s.name: _tensor_info(s) for s in manifest.outputs},
    }
    # The task's method (classify or regress) answers under its own name too, as check_signature takes it.
    verb = "classify" if model.task == CLASSIFICATION else "regress"
    method = f"tensorflow/serving/{verb}"
    defs = {SIGNATURE: {**tensors, "method_name": PREDICT_METHOD}, method: {**tensors, "method_name": method}}
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": "" if number is None else str(number)},
        "metadata": {"signature_def": {"signature_def": defs}},
    }
