"""Keras model families. Only ``keras`` is imported here, so the builders run on any Keras 3
backend (TensorFlow on CPU, JAX on a GPU instance); TensorFlow is needed only to export."""

from __future__ import annotations

from typing import Any

import keras

# Recorded in the manifest: what the graph does itself, so clients must not repeat it.
IN_GRAPH_PREPROCESSING = ["rescale 1/16 (raw 0..16 intensities to 0..1)"]
CLIENT_PREPROCESSING = "send raw 8x8x1 pixel intensities 0..16 as float32; do not rescale"
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


def build_digits_cnn(
    input_shape: tuple[int, ...] = (8, 8, 1),
    num_classes: int = 10,
    *,
    learning_rate: float = 2e-3,
    pixel_max: float = 16.0,
) -> keras.Model:
    """A small CNN for 8x8 digit images; takes raw intensities and returns class probabilities."""
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / pixel_max, name="rescale")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Dropout(0.25, name="dropout1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(0.3, name="dropout2")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name="digits_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


class MetricLines(keras.callbacks.Callback):
    """One ``epoch=N loss=... accuracy=... val_accuracy=...`` line per epoch, for MetricDefinitions.

    With a ``label`` (a compression candidate's own training) the line reads ``<label>: epoch N/M
    ...`` instead, which the MetricDefinitions regexes do not match: they chart the main model only.
    """

    def __init__(self, epochs: int, label: str = "") -> None:
        super().__init__()
        self.epochs = epochs
        self.label = label

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = " ".join(f"{k}={float(v):.4f}" for k, v in sorted((logs or {}).items()) if k != "learning_rate")
        head = f"{self.label}: epoch {epoch + 1}/{self.epochs}" if self.label else f"epoch={epoch + 1} of={self.epochs}"
        print(f"{head} {values}", flush=True)


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


def keras_versions() -> dict[str, str]:
    return {"keras": keras.__version__, "keras_backend": keras.backend.backend()}
