"""Keras parts every family's builder and the job share: the softmax head, per-epoch metric lines,
seeding. Only ``keras`` is imported here, so the models run on any Keras 3 backend (TensorFlow on
CPU, JAX on a GPU instance); TensorFlow is needed only to export. The families are in
``training.families``."""

from __future__ import annotations

from typing import Any

import keras

from training.families.base import PROBABILITIES


def softmax_classifier(inputs: Any, x: Any, num_classes: int, name: str, learning_rate: float) -> keras.Model:
    """A softmax head on ``x``, compiled for integer labels: every classifier answers [N, n_classes]."""
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=PROBABILITIES)(x)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
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
