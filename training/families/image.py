"""The ``image`` family: a small CNN on 8x8x1 digit images that takes raw intensities 0..16."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.families.base import CLASSIFICATION, PROBABILITIES, BuildInputs, Family, rows_of_ndim

if TYPE_CHECKING:
    pass

INPUT_NAME = "image"
OUTPUT_NAME = PROBABILITIES
# Recorded in the manifest: what the graph does itself, so clients must not repeat it.
IN_GRAPH_PREPROCESSING = ["rescale 1/16 (raw 0..16 intensities to 0..1)"]
CLIENT_PREPROCESSING = "send raw 8x8x1 pixel intensities 0..16 as float32; do not rescale"
PIXEL_MAX = 16.0


def build(given: BuildInputs) -> Any:
    """Two convolutions, pooling and a dense layer; rescaling is the graph's first layer."""
    import keras

    from training.models import softmax_classifier

    inputs = keras.Input(shape=given.x.shape[1:], name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / PIXEL_MAX, name="rescale")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Dropout(0.25, name="dropout1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(0.3, name="dropout2")(x)
    return softmax_classifier(inputs, x, given.num_classes, "digits_cnn", given.learning_rate)


def preprocessing(train_rows: int, columns: list[str] | None) -> dict[str, Any]:
    return {"client": CLIENT_PREPROCESSING, "in_graph": IN_GRAPH_PREPROCESSING}


rows_problem = rows_of_ndim(
    4,
    "family {name!r} trains on images (N x H x W x C); the train channel holds rows of shape {shape}: "
    "use family tabular, logistic or linear for feature rows",
)


def write_example(folder: Path) -> Path:
    from training.data import write_digits_channel

    return write_digits_channel(folder)


FAMILY = Family(
    name="image",
    task=CLASSIFICATION,
    input_name=INPUT_NAME,
    output_name=OUTPUT_NAME,
    default_model_name="digits",
    learning_rate=2e-3,
    build=build,
    preprocessing=preprocessing,
    rows_problem=rows_problem,
    write_example=write_example,
    retrained_compression=True,
)
