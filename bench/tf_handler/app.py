"""The TensorFlow baseline: the same digits model as a SavedModel, behind the same kind of handler.

This is what a user would otherwise put in a container image: TensorFlow in the function and the
model as a SavedModel archive in S3. It is loaded lazily, the same way ApiFunction loads its ONNX
model: nothing at import but the standard library, and the first request downloads the archive,
unpacks it under /tmp and loads it; later requests reuse it. It takes the same API Gateway proxy
event (a TensorFlow Serving ``{"instances": [...]}`` body) and answers the same prediction shape.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

BUCKET = os.environ["MODEL_BUCKET"]
ARCHIVE_KEY = os.environ["TF_MODEL_KEY"]

_model: tuple[Any, list[str]] | None = None


def _load() -> tuple[Any, list[str]]:
    import boto3
    import tensorflow as tf

    folder = Path(tempfile.mkdtemp(prefix="tf-model-"))
    archive = folder / "model.tar.gz"
    boto3.client("s3").download_file(BUCKET, ARCHIVE_KEY, str(archive))
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    labels = json.loads((folder / "labels.json").read_text())
    return tf.saved_model.load(str(folder / "saved_model")), labels


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _model
    import numpy as np

    if _model is None:
        _model = _load()
    model, labels = _model
    try:
        instances = np.asarray(json.loads(event["body"])["instances"], dtype=np.float32)
    except (KeyError, TypeError, ValueError) as exc:
        return _response(400, {"error": f"expected a JSON body with numeric instances: {exc}"})
    probabilities = np.asarray(model.serve(instances))
    best = probabilities.argmax(axis=1)
    predictions = [
        {"probabilities": row.tolist(), "label": labels[int(i)], "score": float(row[i])}
        for row, i in zip(probabilities, best, strict=True)
    ]
    return _response(200, {"predictions": predictions})


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
