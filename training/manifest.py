"""The manifest a training job writes beside ``model.onnx`` (fields in ARCHITECTURE.md).

The registry adds name, version and artifact (sha256, size) when it publishes; everything else is
known here. Input and output tensors are read from the ONNX graph that is published.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from maas_core.shared.manifest import CLASSIFICATION, Draft, TensorSpec, manifest_from_graph


def framework_versions(opset: int) -> dict[str, Any]:
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnx_opset": opset,
        "onnxruntime": onnxruntime.__version__,
    }


def build_manifest(
    *,
    onnx_path: str | Path,
    labels: list[str] | None,
    preprocessing: dict[str, Any],
    compression: dict[str, Any],
    metrics: dict[str, Any],
    training_job: dict[str, Any],
    framework: dict[str, Any],
    task: str = CLASSIFICATION,
    created_at: datetime | None = None,
    input_columns: list[str] | None = None,
    text_input: tuple[str, dict[str, Any]] | None = None,
) -> Draft:
    """The manifest's draft; ``labels`` None (regression) leaves the field out, and ``input_columns`` (the
    feature names of a tabular model) become the input's ``columns``, which CSV batch files map by.
    ``text_input`` (name, tokenizer entry) replaces the graph's token-id input by the raw string
    input clients send; the tokenizer's ``graph_input`` names the graph input it feeds."""
    draft = manifest_from_graph(
        onnx_path,
        task=task,
        labels=labels,
        created_at=created_at,
        preprocessing=preprocessing,
        compression=compression,
        metrics=metrics,
        training_job=training_job,
        framework=framework,
    )
    inputs = draft.inputs
    if text_input is not None:
        name, tokenizer = text_input
        if [i.name for i in inputs] != [tokenizer["graph_input"]]:
            found = [i.to_json() for i in inputs]
            raise ValueError(f"graph inputs {found} are not the tokenizer's {tokenizer['graph_input']!r}")
        return replace(draft, inputs=(TensorSpec(name, "string", (None,), tokenizer=tokenizer),))
    if input_columns is not None:
        return replace(draft, inputs=(replace(inputs[0], columns=tuple(input_columns)), *inputs[1:]))
    return draft
