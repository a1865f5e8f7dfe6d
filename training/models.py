"""Keras model families. Only ``keras`` is imported here, so the builders run on any Keras 3
backend (TensorFlow on CPU, JAX on a GPU instance); TensorFlow is needed only to export."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from training.families import Family

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
    return _softmax_classifier(inputs, x, num_classes, "digits_cnn", learning_rate)


# The tabular families standardise inside the graph, so the exported model takes raw values.
STANDARDISATION = "standardise each feature: (x - mean) / std, mean and variance of the {rows} training rows"


def _standardise(x_train: np.ndarray, input_name: str) -> tuple[Any, Any]:
    """The input and a Normalization layer adapted on the training split: part of the model."""
    inputs = keras.Input(shape=x_train.shape[1:], name=input_name)
    normalise = keras.layers.Normalization(axis=-1, name="standardise")
    normalise.adapt(x_train)
    return inputs, normalise(inputs)


def _softmax_classifier(inputs: Any, x: Any, num_classes: int, name: str, learning_rate: float) -> keras.Model:
    """A softmax head on ``x``, compiled for integer labels: every classifier answers [N, n_classes]."""
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def build_tabular_mlp(
    x_train: np.ndarray, num_classes: int, *, learning_rate: float = 2e-3, input_name: str = "features"
) -> keras.Model:
    """An MLP classifier on raw feature rows: standardise, two hidden layers, softmax."""
    inputs, x = _standardise(x_train, input_name)
    x = keras.layers.Dense(64, activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense2")(x)
    return _softmax_classifier(inputs, x, num_classes, "tabular_mlp", learning_rate)


def build_logistic(
    x_train: np.ndarray, num_classes: int, *, learning_rate: float = 2e-3, input_name: str = "features"
) -> keras.Model:
    """Logistic regression: standardise, then one Dense softmax layer (softmax over two classes for
    binary data too, so every classifier answers a [N, n_classes] probability row)."""
    inputs, x = _standardise(x_train, input_name)
    return _softmax_classifier(inputs, x, num_classes, "logistic_regression", learning_rate)


def build_linear(
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    learning_rate: float = 0.1,
    input_name: str = "features",
    output_name: str = "prediction",
) -> keras.Model:
    """Linear regression: standardise, then Dense(1); mean squared error, RMSE and MAE reported.
    The bias starts at the training targets' mean, so the steps go to the slopes."""
    inputs, x = _standardise(x_train, input_name)
    bias = keras.initializers.Constant(float(np.mean(y_train)))
    outputs = keras.layers.Dense(1, bias_initializer=bias, name=output_name)(x)
    model = keras.Model(inputs, outputs, name="linear_regression")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="mean_squared_error",
        metrics=[keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")],
    )
    return model


def build_text(
    sequence_length: int,
    vocabulary_size: int,
    num_classes: int,
    *,
    recurrent: bool = False,
    learning_rate: float = 1e-2,
    input_name: str = "tokens",
    embedding_dim: int = 32,
    units: int = 32,
) -> keras.Model:
    """A text classifier on int64 token ids (``shared.text`` tokenises): Embedding, then mean pooling
    (a bag of words) or, with ``recurrent``, an LSTM that reads word order; then softmax.

    No masking: ids are left-padded, so the LSTM ends on the last real word, and tf2onnx turns the
    unmasked Keras LSTM into one ONNX ``LSTM`` op."""
    inputs = keras.Input(shape=(sequence_length,), dtype="int64", name=input_name)
    x = keras.layers.Embedding(vocabulary_size, embedding_dim, name="embedding")(inputs)
    sequence = keras.layers.LSTM(units, name="lstm") if recurrent else keras.layers.GlobalAveragePooling1D(name="mean")
    x = sequence(x)
    x = keras.layers.Dense(units, activation="relu", name="dense")(x)
    return _softmax_classifier(inputs, x, num_classes, "text_lstm" if recurrent else "text_bag_of_words", learning_rate)


def build(
    family: Family,
    x_train: np.ndarray,
    y_train: np.ndarray,
    num_classes: int,
    *,
    learning_rate: float,
    vocabulary_size: int = 0,
) -> keras.Model:
    """The family's untrained, compiled model for this training data (token ids for text)."""
    if family.text:
        return build_text(
            x_train.shape[1],
            vocabulary_size,
            num_classes,
            recurrent=family.name == "text-rnn",
            learning_rate=learning_rate,
            input_name=family.input_name,
        )
    if family.name == "image":
        return build_digits_cnn(x_train.shape[1:], num_classes, learning_rate=learning_rate)
    if family.name == "tabular":
        return build_tabular_mlp(x_train, num_classes, learning_rate=learning_rate, input_name=family.input_name)
    if family.name == "logistic":
        return build_logistic(x_train, num_classes, learning_rate=learning_rate, input_name=family.input_name)
    if family.name == "linear":
        return build_linear(
            x_train, y_train, learning_rate=learning_rate, input_name=family.input_name, output_name=family.output_name
        )
    raise ValueError(f"no model builder for family {family.name!r}")


def preprocessing(family: Family, train_rows: int, columns: list[str] | None) -> dict[str, Any]:
    """The manifest's ``preprocessing``: what the graph does, and what the client sends."""
    if family.name == "image":
        return {"client": CLIENT_PREPROCESSING, "in_graph": IN_GRAPH_PREPROCESSING}
    if family.text:
        return {
            "client": "send raw text, one string per instance; do not tokenise",
            "server": [
                "tokenise with inputs[0].tokenizer (shared.text): lowercase, words by its pattern, "
                "vocabulary ids (1 = unknown), cut and left-padded to its sequence_length"
            ],
            "in_graph": ["embedding of the token ids"],
        }
    named = f" in the order of the input's columns ({len(columns)})" if columns else ""
    return {
        "client": f"send raw feature values as float32{named}; do not standardise",
        "in_graph": [STANDARDISATION.format(rows=train_rows)],
    }


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
