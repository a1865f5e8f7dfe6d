"""The ``tabular`` family: an MLP classifier on raw feature rows (standardise, two hidden layers, softmax)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training.families.base import CLASSIFICATION, BuildInputs
from training.families.features import feature_family, standardise

if TYPE_CHECKING:
    pass


def build(given: BuildInputs) -> Any:
    import keras

    from training.models import softmax_classifier

    inputs, x = standardise(given.x)
    x = keras.layers.Dense(64, activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense2")(x)
    return softmax_classifier(inputs, x, given.num_classes, "tabular_mlp", given.learning_rate)


FAMILY = feature_family(
    "tabular", CLASSIFICATION, build, registry_name="breast-cancer", learning_rate=2e-3, example="breast_cancer"
)
