"""The ``logistic`` family: logistic regression on raw feature rows (standardise, one Dense softmax
layer; softmax over two classes for binary data too, so every classifier answers [N, n_classes])."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training.families.base import CLASSIFICATION, BuildInputs
from training.families.features import feature_family, standardise

if TYPE_CHECKING:
    pass


def build(given: BuildInputs) -> Any:
    from training.models import softmax_classifier

    inputs, x = standardise(given.x)
    return softmax_classifier(inputs, x, given.num_classes, "logistic_regression", given.learning_rate)


FAMILY = feature_family(
    "logistic",
    CLASSIFICATION,
    build,
    registry_name="breast-cancer-logistic",
    learning_rate=1e-2,
    example="breast_cancer",
)
