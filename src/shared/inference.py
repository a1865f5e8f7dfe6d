"""The inference core shared by API calls, direct invokes and batch files.

Input checks are derived from the manifest (names, dtypes, shapes with free dimensions), never
written per model. Errors say which input, what was expected and what came.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from shared.errors import BadRequest, InvalidInput, PayloadTooLarge
from shared.model_cache import LoadedModel
from shared.model_check import graph_input
from shared.text import WordTokenizer

NUMPY_DTYPES = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "int64": np.int64,
    "int32": np.int32,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


def parse_json_body(body: str | bytes | None, max_bytes: int) -> Any:
    """Size first (413), then JSON (400): a huge body is refused before it is parsed."""
    if body is None or len(body) == 0:
        raise BadRequest("request body is empty; expected a JSON object", expected='{"instances": [...]}')
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"request body is {len(body)} bytes; the limit is {max_bytes}", limit_bytes=max_bytes, received=len(body)
        )
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.__class__.__name__}", expected="JSON") from None


def shape_str(shape: list[int | None] | tuple[int | None, ...]) -> str:
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def check_batch(name: str, count: int, max_batch: int) -> None:
    """The per-request batch limit, the same for every body convention."""
    if count > max_batch:
        raise InvalidInput(
            f"{count} instances exceed the batch limit of {max_batch}",
            input=name,
            expected=f"at most {max_batch} instances",
            received=count,
        )


def token_ids(value: Any, spec: dict[str, Any], tokenizer: WordTokenizer, max_batch: int) -> np.ndarray:
    """A batch of raw strings for a tokenised input, as the graph's int64 token ids."""
    name = spec["name"]
    expected = "a non-empty list of strings (raw text, one per instance)"
    if not isinstance(value, list) or len(value) == 0:
        received = type(value).__name__ if not isinstance(value, list) else "empty list"
        raise InvalidInput(f"input {name!r} needs {expected}", input=name, expected=expected, received=received)
    check_batch(name, len(value), max_batch)
    wrong = [i for i, v in enumerate(value) if not isinstance(v, str)]
    if wrong:
        raise InvalidInput(
            f"input {name!r} takes raw text: each instance must be a string (instance {wrong[0]} is not)",
            input=name,
            expected=expected,
            received=type(value[wrong[0]]).__name__,
        )
    return tokenizer.encode(value)


def to_tensor(value: Any, spec: dict[str, Any], max_batch: int, tokenizer: WordTokenizer | None = None) -> np.ndarray:
    """Turn a JSON batch for one input into an array that fits the input's spec, or raise InvalidInput.
    A string input with a tokenizer becomes the token ids its graph input takes."""
    if tokenizer is not None:
        return token_ids(value, spec, tokenizer, max_batch)
    name, dtype, shape = spec["name"], spec["dtype"], spec["shape"]
    if not isinstance(value, list) or len(value) == 0:
        raise InvalidInput(
            f"input {name!r} needs a non-empty list of instances",
            input=name,
            expected=f"list of instances of shape {shape_str(shape[1:])}",
            received=type(value).__name__ if not isinstance(value, list) else "empty list",
        )
    check_batch(name, len(value), max_batch)
    np_dtype = NUMPY_DTYPES.get(dtype)
    if np_dtype is None:
        raise InvalidInput(f"input {name!r} has dtype {dtype}, which this API cannot build from JSON", input=name)
    check_numbers(name, value, np_dtype, f"numbers in shape {shape_str(shape)}")
    try:
        array = np.asarray(value, dtype=np.float64 if np_dtype != np.bool_ else np.bool_)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"input {name!r} must be a rectangular array of numbers",
            input=name,
            expected=f"numbers in shape {shape_str(shape)}",
            received="ragged or non-numeric values",
        ) from None
    if array.ndim != len(shape) or any(d is not None and d != a for d, a in zip(shape, array.shape, strict=False)):
        raise InvalidInput(
            f"input {name!r} has shape {list(array.shape)}; expected {shape_str(shape)} (first dimension = instances)",
            input=name,
            expected=shape_str(shape),
            received=list(array.shape),
        )
    if array.dtype == np.float64:
        if not np.isfinite(array).all():
            raise InvalidInput(
                f"input {name!r} contains NaN or infinite values",
                input=name,
                expected="finite numbers",
                received="NaN or Infinity",
            )
        if np.issubdtype(np_dtype, np.integer) and not np.all(np.equal(np.mod(array, 1), 0)):
            raise InvalidInput(f"input {name!r} expects integers", input=name, expected=dtype, received="fractions")
    return cast_in_range(name, array, np_dtype)


_JSON_TYPES = {str: "a string", bool: "a boolean", type(None): "null", dict: "an object"}


def check_numbers(name: str, value: Any, np_dtype: Any, expected: str) -> None:
    """Refuse a nested list whose leaves are not all JSON numbers (booleans only for a bool input).

    numpy would quietly read ``"1"`` and ``true`` as 1.0, and ``null`` as NaN."""
    allow_bool = np_dtype == np.bool_
    pending = [value]
    while pending:
        for item in pending.pop():
            kind = type(item)
            if kind is list:
                pending.append(item)
            elif kind is not float and kind is not int and not (kind is bool and allow_bool):
                what = _JSON_TYPES.get(kind, kind.__name__)
                raise InvalidInput(
                    f"input {name!r} takes numbers; it got {what}",
                    input=name,
                    expected=expected,
                    received=what if kind is not str else f"string {item[:20]!r}",
                )


def cast_in_range(name: str, array: np.ndarray, np_dtype: Any) -> np.ndarray:
    """Cast to the input's dtype, refusing values it cannot hold: 1e39 is finite in JSON but
    infinite in float32, and 1e30 has no int64."""
    if np.issubdtype(np_dtype, np.integer):
        info = np.iinfo(np_dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise InvalidInput(
                f"input {name!r} has values outside the range of {np.dtype(np_dtype).name}",
                input=name,
                expected=f"integers in [{info.min}, {info.max}]",
                received=f"[{array.min():g}, {array.max():g}]",
            )
        return array.astype(np_dtype)
    with np.errstate(over="ignore"):
        cast = array.astype(np_dtype, copy=False)
    if np.issubdtype(np_dtype, np.floating) and not np.isfinite(cast).all():
        limit = float(np.finfo(np_dtype).max)
        raise InvalidInput(
            f"input {name!r} has values outside the range of {np.dtype(np_dtype).name} (about ±{limit:.3g})",
            input=name,
            expected=f"finite {np.dtype(np_dtype).name} numbers",
            received="a value too large for it",
        )
    return cast


def check_input_names(names: list[str], specs: list[dict[str, Any]]) -> None:
    declared = [s["name"] for s in specs]
    missing, extra = sorted(set(declared) - set(names)), sorted(set(names) - set(declared))
    if missing or extra:
        raise InvalidInput(
            "inputs must name each model input exactly once",
            expected=declared,
            received=names[:20],
            missing=missing,
            unexpected=extra[:20],
        )


def _feed(value: Any, spec: dict[str, Any], model: LoadedModel, max_batch: int) -> tuple[str, np.ndarray]:
    """(graph input name, array) for one manifest input."""
    tokenizer = model.tokenizer(spec) if spec.get("tokenizer") else None
    return graph_input(spec), to_tensor(value, spec, max_batch, tokenizer)


def feeds_from_body(body: Any, model: LoadedModel, max_batch: int) -> dict[str, np.ndarray]:
    """Read a TensorFlow Serving body: row format ``instances`` or columnar ``inputs``. The feeds are
    keyed by graph input (a tokenised text input feeds its token ids)."""
    if not isinstance(body, dict):
        raise BadRequest(
            "request body must be a JSON object", expected='{"instances": [...]}', received=type(body).__name__
        )
    specs = model.manifest["inputs"]
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise BadRequest(
            "request body needs exactly one of 'instances' (row format) or 'inputs' (columnar format)",
            expected=["instances", "inputs"],
            received=sorted(body)[:10],
        )
    if has_instances:
        instances = body["instances"]
        if len(specs) == 1:
            return dict([_feed(instances, specs[0], model, max_batch)])
        if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
            raise BadRequest(
                "this model has several inputs: each instance must be an object keyed by input name",
                expected=[s["name"] for s in specs],
            )
        for instance in instances:
            check_input_names(list(instance), specs)
        columns = {s["name"]: [i.get(s["name"]) for i in instances] for s in specs}
        return dict(_feed(columns[s["name"]], s, model, max_batch) for s in specs)
    inputs = body["inputs"]
    if len(specs) == 1 and not isinstance(inputs, dict):
        inputs = {specs[0]["name"]: inputs}
    if not isinstance(inputs, dict):
        raise BadRequest(
            "'inputs' must be an object of named tensors for a model with several inputs",
            expected=[s["name"] for s in specs],
            received=type(inputs).__name__,
        )
    check_input_names(list(inputs), specs)
    feeds = dict(_feed(inputs[s["name"]], s, model, max_batch) for s in specs)
    if len({len(a) for a in feeds.values()}) != 1:
        raise InvalidInput(
            "all inputs must have the same number of instances", received={k: len(v) for k, v in feeds.items()}
        )
    return feeds


def run(model: LoadedModel, feeds: dict[str, np.ndarray], *, finite: bool = True) -> dict[str, np.ndarray]:
    """The model's outputs by name. With ``finite`` (the API), an instance whose outputs hold NaN or
    Infinity (which JSON cannot carry) is refused as an input error; batch scoring passes False and
    routes such rows to its errors file with ``nonfinite_rows``."""
    names = [o["name"] for o in model.manifest["outputs"]]
    values = model.session.run(names, feeds)
    outputs = dict(zip(names, values, strict=True))
    if finite:
        bad = nonfinite_rows(outputs)
        if bad:
            raise InvalidInput(
                f"the model's outputs are NaN or infinite for instance {bad[0]}: "
                "its values are outside the range this model handles",
                expected="inputs on the scale the model was trained on",
                instances=bad[:20],
            )
    return outputs


def nonfinite_rows(outputs: dict[str, np.ndarray]) -> list[int]:
    """Instances (first dimension) whose float outputs hold NaN or Infinity."""
    bad: set[int] = set()
    for value in outputs.values():
        if not np.issubdtype(value.dtype, np.floating):
            continue
        if value.ndim == 0:
            if not np.isfinite(value):
                return [0]
            continue
        rows = ~np.isfinite(value.reshape(len(value), -1)).all(axis=1)
        bad.update(int(i) for i in np.flatnonzero(rows))
    return sorted(bad)


def _classes(model: LoadedModel, outputs: dict[str, np.ndarray], top_k: int | None) -> list[dict[str, Any]]:
    """Per instance: the best label, its score and, when asked, the k best."""
    labels = model.labels or []
    scores = outputs[model.manifest["outputs"][0]["name"]]
    rows = []
    for row in scores.reshape(len(scores), -1):
        order = np.argsort(-row)
        best = int(order[0])
        item: dict[str, Any] = {"label": labels[best] if best < len(labels) else str(best), "score": float(row[best])}
        if top_k:
            item["top_k"] = [
                {"label": labels[j] if j < len(labels) else str(j), "score": float(row[j])} for j in order[:top_k]
            ]
        rows.append(item)
    return rows


def format_predictions(model: LoadedModel, outputs: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
    """Row format: one entry per instance holding the raw outputs by name (TF Serving's multi-output
    row form) plus, for classifiers, the label, its score and optionally the top k."""
    rows = len(next(iter(outputs.values())))
    predictions: list[dict[str, Any]] = [
        {name: value[i].tolist() for name, value in outputs.items()} for i in range(rows)
    ]
    if model.task == "classification" and model.labels:
        for row, extra in zip(predictions, _classes(model, outputs, top_k), strict=True):
            row.update(extra)
    return predictions


def format_outputs(model: LoadedModel, outputs: dict[str, np.ndarray], top_k: int | None = None) -> dict[str, Any]:
    """Columnar format: each output as one tensor; classifiers add ``label``/``score`` (and ``top_k``) columns."""
    columns: dict[str, Any] = {name: value.tolist() for name, value in outputs.items()}
    if model.task == "classification" and model.labels:
        classes = _classes(model, outputs, top_k)
        for key in ("label", "score", "top_k"):
            if classes and key in classes[0]:
                columns[key] = [c[key] for c in classes]
    return columns
