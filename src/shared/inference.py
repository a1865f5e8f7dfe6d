"""The inference core shared by API calls, direct invokes and batch files.

Input checks are derived from the manifest (names, dtypes, shapes with free dimensions), never
written per model. Errors say which input, what was expected and what came.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from maas_core.shared.dtypes import DTYPES
from maas_core.shared.errors import BadRequest, InvalidInput
from maas_core.shared.manifest import CLASSIFICATION, TensorSpec
from maas_core.shared.model_cache import LoadedModel
from maas_core.shared.tensors import (
    check_batch,
    check_names,
    check_same_count,
    check_shape,
    numbers,
    shape_str,
    token_ids,
    typed,
)
from maas_core.shared.text import WordTokenizer


def to_tensor(value: Any, spec: TensorSpec, max_batch: int, tokenizer: WordTokenizer | None = None) -> np.ndarray:
    """Turn a JSON batch for one input into an array that fits the input's spec, or raise InvalidInput.
    A string input with a tokenizer becomes the token ids its graph input takes."""
    if tokenizer is not None:
        return token_ids(value, spec, tokenizer, max_batch)
    name, dtype, shape = spec.name, DTYPES[spec.dtype], spec.shape
    if not isinstance(value, list) or len(value) == 0:
        raise InvalidInput(
            f"input {name!r} needs a non-empty list of instances",
            input=name,
            expected=f"list of instances of shape {shape_str(shape[1:])}",
            received=type(value).__name__ if not isinstance(value, list) else "empty list",
        )
    check_batch(name, len(value), max_batch)
    if dtype.numpy is None:
        raise InvalidInput(f"input {name!r} has dtype {dtype.name}, which this API cannot build from JSON", input=name)
    array = numbers(name, value, dtype, f"numbers in shape {shape_str(shape)}")
    check_shape(name, array.shape, shape)
    return typed(name, array, dtype, dtype.name)


def _feed(value: Any, spec: TensorSpec, model: LoadedModel, max_batch: int) -> tuple[str, np.ndarray]:
    """(graph input name, array) for one manifest input."""
    tokenizer = model.tokenizer(spec) if spec.tokenizer is not None else None
    return spec.graph_input, to_tensor(value, spec, max_batch, tokenizer)


def feeds_from_body(body: Any, model: LoadedModel, max_batch: int) -> dict[str, np.ndarray]:
    """Read a TensorFlow Serving body: row format ``instances`` or columnar ``inputs``. The feeds are
    keyed by graph input (a tokenised text input feeds its token ids)."""
    if not isinstance(body, dict):
        raise BadRequest(
            "request body must be a JSON object", expected='{"instances": [...]}', received=type(body).__name__
        )
    specs = model.manifest.inputs
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
                expected=[s.name for s in specs],
            )
        for instance in instances:
            check_names(list(instance), specs)
        columns = {s.name: [i.get(s.name) for i in instances] for s in specs}
        return dict(_feed(columns[s.name], s, model, max_batch) for s in specs)
    inputs = body["inputs"]
    if len(specs) == 1 and not isinstance(inputs, dict):
        inputs = {specs[0].name: inputs}
    if not isinstance(inputs, dict):
        raise BadRequest(
            "'inputs' must be an object of named tensors for a model with several inputs",
            expected=[s.name for s in specs],
            received=type(inputs).__name__,
        )
    check_names(list(inputs), specs)
    feeds = dict(_feed(inputs[s.name], s, model, max_batch) for s in specs)
    check_same_count(feeds)
    return feeds


def run(model: LoadedModel, feeds: dict[str, np.ndarray], *, finite: bool = True) -> dict[str, np.ndarray]:
    """The model's outputs by name. With ``finite`` (the API), an instance whose outputs hold NaN or
    Infinity (which JSON cannot carry) is refused as an input error; batch scoring passes False and
    routes such rows to its errors file with ``nonfinite_rows``."""
    names = [o.name for o in model.manifest.outputs]
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
    """Per instance: the best label, its score and, when asked, the k best (one numpy call per batch, not
    per row; ties go to the lower index)."""
    labels = model.labels or ()
    scores = outputs[model.manifest.outputs[0].name]
    table = scores.reshape(len(scores), -1)

    def label(j: int) -> str:
        return labels[j] if j < len(labels) else str(j)

    best = table.argmax(axis=1)
    rows = [
        {"label": label(j), "score": score}
        for j, score in zip(best.tolist(), table[np.arange(len(table)), best].tolist(), strict=True)
    ]
    if top_k:
        order = np.argsort(-table, axis=1, kind="stable")[:, :top_k]
        ranked = np.take_along_axis(table, order, axis=1)
        for row, indices, values in zip(rows, order.tolist(), ranked.tolist(), strict=True):
            row["top_k"] = [{"label": label(j), "score": v} for j, v in zip(indices, values, strict=True)]
    return rows


def format_predictions(model: LoadedModel, outputs: dict[str, np.ndarray], top_k: int | None = None) -> list[Any]:
    """Row format: one entry per instance holding the raw outputs by name (TF Serving's multi-output
    row form) plus, for classifiers, the label, its score and optionally the top k."""
    columns = {name: value.tolist() for name, value in outputs.items()}  # one conversion per output
    rows = len(next(iter(outputs.values())))
    predictions: list[dict[str, Any]] = [{name: column[i] for name, column in columns.items()} for i in range(rows)]
    if model.task == CLASSIFICATION and model.labels:
        for row, extra in zip(predictions, _classes(model, outputs, top_k), strict=True):
            row.update(extra)
    return predictions


def format_outputs(model: LoadedModel, outputs: dict[str, np.ndarray], top_k: int | None = None) -> dict[str, Any]:
    """Columnar format: each output as one tensor; classifiers add ``label``/``score`` (and ``top_k``) columns."""
    columns: dict[str, Any] = {name: value.tolist() for name, value in outputs.items()}
    if model.task == CLASSIFICATION and model.labels:
        classes = _classes(model, outputs, top_k)
        for key in ("label", "score", "top_k"):
            if classes and key in classes[0]:
                columns[key] = [c[key] for c in classes]
    return columns
