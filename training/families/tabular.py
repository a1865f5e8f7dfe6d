"""The ``tabular`` family: an MLP classifier on raw feature rows (standardise, two hidden layers, softmax)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training.families.base import CLASSIFICATION
from training.families.features import feature_family, standardise

if TYPE_CHECKING:
    import numpy as np


def build(x_train: np.ndarray, y_train: np.ndarray, num_classes: int, *, learning_rate: float, **_: Any) -> Any:
    import keras

    from training.models import softmax_classifier

    inputs, x = standardise(x_train)
    x = keras.layers.Dense(64, activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense2")(x)
    return softmax_classifier(inputs, x, num_classes, "tabular_mlp", learning_rate)


FAMILY = feature_family(
    "tabular", CLASSIFICATION, build, registry_name="breast-cancer", learning_rate=2e-3, example="breast_cancer"
)
