"""The ``linear`` family: linear regression on raw feature rows (standardise, then Dense(1)); mean
squared error, with RMSE and MAE reported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from training.families.base import REGRESSION, BuildInputs
from training.families.features import feature_family, standardise

if TYPE_CHECKING:
    pass

OUTPUT_NAME = "prediction"


def build(given: BuildInputs) -> Any:
    """The bias starts at the training targets' mean, so the steps go to the slopes."""
    import keras

    inputs, x = standardise(given.x)
    bias = keras.initializers.Constant(float(given.y.mean()))
    outputs = keras.layers.Dense(1, bias_initializer=bias, name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name="linear_regression")
    model.compile(
        optimizer=keras.optimizers.Adam(given.learning_rate),
        loss="mean_squared_error",
        metrics=[keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")],
    )
    return model


# A linear model needs big steps: 0.1.
FAMILY = feature_family(
    "linear",
    REGRESSION,
    build,
    registry_name="diabetes",
    learning_rate=0.1,
    example="diabetes",
    output_name=OUTPUT_NAME,
)
