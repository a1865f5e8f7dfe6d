"""ONNX export: Keras model -> tf.function with a named input -> tf2onnx, then checks.

``tf2onnx.convert.from_keras`` breaks on Keras 3, so a ``tf.function`` with an explicit input
signature is converted instead; the function returns a dict so the ONNX output gets a stable name.
TensorFlow is imported here only, lazily, and export needs the TensorFlow Keras backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.models import INPUT_NAME, OUTPUT_NAME

OPSET = 17
PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported ONNX model is invalid or does not compute what the Keras model computes."""


def export_onnx(model: Any, path: str | Path, *, opset: int = OPSET) -> Path:
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"ONNX export traces the model with TensorFlow; run with KERAS_BACKEND=tensorflow "
            f"(this run uses {keras.backend.backend()!r})"
        )
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(image: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: model(image, training=False)}

    path = Path(path)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset, output_path=str(path))
    onnx.checker.check_model(proto)
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([INPUT_NAME], [OUTPUT_NAME]):
        raise ExportError(f"exported graph has inputs/outputs {names}, expected ([{INPUT_NAME!r}], [{OUTPUT_NAME!r}])")
    return path


def check_parity(model: Any, onnx_path: str | Path, x: np.ndarray, *, tolerance: float = PARITY_TOLERANCE) -> float:
    """Max |ONNX Runtime - Keras| over ``x``; raises ExportError above ``tolerance``."""
    from training.compress import onnx_session

    expected = np.asarray(model.predict(x, batch_size=256, verbose=0))
    got = onnx_session(onnx_path).run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})[0]
    diff = float(np.max(np.abs(expected - got)))
    if not diff <= tolerance:
        raise ExportError(f"ONNX Runtime output differs from Keras by {diff:.3g} (> {tolerance:g}) on {len(x)} rows")
    return diff
