"""What the feature-row families (``tabular``, ``logistic``, ``linear``) share: rows of raw feature
values in (CSV, JSON Lines or N x F .npz), standardised inside the graph so clients send raw values."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.families.base import PROBABILITIES, Family, rows_of_ndim

if TYPE_CHECKING:
    import numpy as np

INPUT_NAME = "features"
STANDARDISATION = "standardise each feature: (x - mean) / std, mean and variance of the {rows} training rows"


def standardise(x_train: np.ndarray) -> tuple[Any, Any]:
    """The input and a Normalization layer adapted on the training split: part of the model."""
    import keras

    inputs = keras.Input(shape=x_train.shape[1:], name=INPUT_NAME)
    normalise = keras.layers.Normalization(axis=-1, name="standardise")
    normalise.adapt(x_train)
    return inputs, normalise(inputs)


def preprocessing(train_rows: int, columns: list[str] | None) -> dict[str, Any]:
    named = f" in the order of the input's columns ({len(columns)})" if columns else ""
    return {
        "client": f"send raw feature values as float32{named}; do not standardise",
        "in_graph": [STANDARDISATION.format(rows=train_rows)],
    }


rows_problem = rows_of_ndim(
    2,
    "family {name!r} trains on rows of features (CSV, JSON Lines, or .npz x of N x F); "
    "the train channel holds x of shape {shape}",
)


def _write_example(dataset: str, folder: Path) -> Path:
    from training.data import write_tabular_channel

    return write_tabular_channel(folder, dataset)


def feature_family(
    name: str,
    task: str,
    build: Callable[..., Any],
    *,
    registry_name: str,
    learning_rate: float,
    example: str,
    output_name: str = PROBABILITIES,
) -> Family:
    """A family on feature rows; ``example`` is a ``training.data.TABULAR_DATASETS`` key and
    ``registry_name`` its ``default_model_name``."""
    return Family(
        name=name,
        task=task,
        input_name=INPUT_NAME,
        output_name=output_name,
        default_model_name=registry_name,
        learning_rate=learning_rate,
        build=build,
        preprocessing=preprocessing,
        rows_problem=rows_problem,
        write_example=functools.partial(_write_example, example),
    )
