"""The manifest a training job writes beside ``model.onnx`` (fields in ARCHITECTURE.md).

The registry adds name, version and artifact (sha256, size) when it publishes; everything else is
known here. Input and output tensors are read from the ONNX graph that is published.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from maas_core.shared.manifest import manifest_from_graph
from training.families.base import CLASSIFICATION


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
) -> dict[str, Any]:
    """The manifest; ``labels`` None (regression) leaves the field out, and ``input_columns`` (the
    feature names of a tabular model) become the input's ``columns``, which CSV batch files map by.
    ``text_input`` (name, tokenizer entry) replaces the graph's token-id input by the raw string
    input clients send; the tokenizer's ``graph_input`` names the graph input it feeds."""
    body = manifest_from_graph(
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
    inputs = body["inputs"]
    if text_input is not None:
        name, tokenizer = text_input
        if [i["name"] for i in inputs] != [tokenizer["graph_input"]]:
            raise ValueError(f"graph inputs {inputs} are not the tokenizer's {tokenizer['graph_input']!r}")
        body["inputs"] = [{"name": name, "dtype": "string", "shape": [None], "tokenizer": tokenizer}]
    elif input_columns is not None:
        inputs[0]["columns"] = list(input_columns)
    return body
