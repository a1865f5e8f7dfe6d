"""ONNX export: Keras model -> tf.function with a named input -> tf2onnx, then checks.

``tf2onnx.convert.from_keras`` breaks on Keras 3, so a ``tf.function`` with an explicit input
signature is converted instead; the function returns a dict so the ONNX output gets a stable name.
TensorFlow is imported here only, lazily, and export needs the TensorFlow Keras backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.families.image import INPUT_NAME, OUTPUT_NAME

OPSET = 17
PARITY_TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported ONNX model is invalid or does not compute what the Keras model computes."""


def export_onnx(
    model: Any,
    path: str | Path,
    *,
    opset: int = OPSET,
    input_name: str = INPUT_NAME,
    output_name: str = OUTPUT_NAME,
    input_dtype: str = "float32",
) -> Path:
    """Export ``model`` as an ONNX graph with one input (float32, or int64 token ids) and one
    output, named as given."""
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ExportError(
            f"ONNX export traces the model with TensorFlow; run with KERAS_BACKEND=tensorflow "
            f"(this run uses {keras.backend.backend()!r})"
        )
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = tf.TensorSpec((None, *model.input_shape[1:]), tf.as_dtype(input_dtype), name=input_name)

    @tf.function(input_signature=[spec])
    def serve(inputs: Any) -> dict[str, Any]:
        return {output_name: model(inputs, training=False)}

    path = Path(path)
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
    _bind_captured_constants(proto, serve.get_concrete_function(spec))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([input_name], [output_name]):
        raise ExportError(f"exported graph has inputs/outputs {names}, expected ([{input_name!r}], [{output_name!r}])")
    return path


def _bind_captured_constants(proto: Any, concrete: Any) -> None:
    """Turn captured eager tensors into initializers. tf2onnx freezes captured variables, but a
    tensor captured from eager code (an adapted ``Normalization`` layer's mean and variance) becomes
    an extra graph input; its value is fixed, so it belongs in the graph."""
    import tensorflow as tf
    from onnx import numpy_helper

    explicit = len(concrete.inputs) - len(concrete.captured_inputs)
    values = {
        placeholder.name: value.numpy()
        for placeholder, value in zip(concrete.inputs[explicit:], concrete.captured_inputs, strict=True)
        if placeholder.dtype != tf.resource
    }
    bound = [i for i in proto.graph.input if i.name in values]
    for value_info in bound:
        proto.graph.initializer.append(numpy_helper.from_array(values[value_info.name], value_info.name))
        proto.graph.input.remove(value_info)


def check_parity(model: Any, onnx_path: str | Path, x: np.ndarray, *, tolerance: float = PARITY_TOLERANCE) -> float:
    """Max |ONNX Runtime - Keras| over ``x``; raises ExportError above ``tolerance``.

    Probabilities lie in 0..1, so the tolerance is absolute for them; a regression output is held to
    it relative to its largest magnitude (float32 rounding of a prediction of 300 is ~1e-5)."""
    from training.compress import parity_scale, predict

    expected = np.asarray(model.predict(x, batch_size=256, verbose=0))
    got = predict(onnx_path, x)
    diff = float(np.max(np.abs(expected - got)))
    allowed = tolerance * parity_scale(expected)
    if not diff <= allowed:
        raise ExportError(f"ONNX Runtime output differs from Keras by {diff:.3g} (> {allowed:g}) on {len(x)} rows")
    return diff
