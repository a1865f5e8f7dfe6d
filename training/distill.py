"""Knowledge distillation: a smaller student CNN learns from the trained teacher's softened outputs.

The loss is Hinton et al.'s: ``alpha`` x cross-entropy on the true labels plus ``(1 - alpha)`` x
T^2 x KL(teacher_T || student_T), where ``_T`` is a distribution softened by temperature T. The
teacher ends in a softmax, so its softened distribution is softmax(log p / T), which equals
softmax(logits / T). The soft targets are computed once, before training, so the student trains
through an ordinary ``fit`` on any backend: targets are [one-hot labels | softened teacher].
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from training.compress import DEFAULT_DISTILLATION_TEMPERATURE
from training.families.image import INPUT_NAME, OUTPUT_NAME, PIXEL_MAX

DEFAULT_ALPHA = 0.3  # weight of the true labels; the rest goes to the teacher
_EPS = 1e-7


def build_student_cnn(
    input_shape: tuple[int, ...] = (8, 8, 1), num_classes: int = 10, *, pixel_max: float = PIXEL_MAX
) -> keras.Model:
    """The teacher's shape at half its conv width and a quarter of its dense width (about 1/7 of its
    parameters), with the same input, preprocessing and output names."""
    inputs = keras.Input(shape=input_shape, name=INPUT_NAME)
    x = keras.layers.Rescaling(1.0 / pixel_max, name="rescale")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=OUTPUT_NAME)(x)
    return keras.Model(inputs, outputs, name="digits_cnn_student")


def soften(probabilities: Any, temperature: float) -> Any:
    """softmax(log p / T): the distribution a softmax with its logits divided by T would give."""
    return ops.softmax(ops.log(ops.clip(probabilities, _EPS, 1.0)) / temperature, axis=-1)


def distillation_loss(num_classes: int, temperature: float, alpha: float) -> Any:
    def loss(targets: Any, student: Any) -> Any:
        hard, soft_teacher = targets[:, :num_classes], targets[:, num_classes:]
        student = ops.clip(student, _EPS, 1.0)
        cross_entropy = -ops.sum(hard * ops.log(student), axis=-1)
        soft_student = ops.clip(soften(student, temperature), _EPS, 1.0)
        kl = ops.sum(soft_teacher * (ops.log(ops.clip(soft_teacher, _EPS, 1.0)) - ops.log(soft_student)), axis=-1)
        return alpha * cross_entropy + (1 - alpha) * temperature**2 * kl

    return loss


def distill(
    teacher: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    temperature: float = DEFAULT_DISTILLATION_TEMPERATURE,
    alpha: float = DEFAULT_ALPHA,
    callbacks: list[Any] | None = None,
) -> keras.Model:
    """Train a student on ``x`` against the teacher's softened predictions and the true labels."""
    teacher_probabilities = np.asarray(teacher.predict(x, batch_size=256, verbose=0))
    soft = ops.convert_to_numpy(soften(teacher_probabilities, temperature)).astype(np.float32)
    targets = np.concatenate([np.eye(num_classes, dtype=np.float32)[y], soft], axis=1)
    student = build_student_cnn(x.shape[1:], num_classes)
    student.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss=distillation_loss(num_classes, temperature, alpha)
    )
    student.fit(x, targets, epochs=epochs, batch_size=batch_size, callbacks=list(callbacks or []), verbose=0)
    return student
