"""Magnitude pruning during training, as a Keras 3 callback written with ``keras.ops`` only.

tensorflow-model-optimization (``prune_low_magnitude``) supports only Keras 2 (tf.keras), so it
cannot wrap this project's Keras 3 models; this small callback does the part we need on any
backend. Over the fine-tuning run it raises each Conv/Dense kernel's sparsity from 0 to the target
along tfmot's cubic (polynomial decay) schedule, zeroing the smallest-magnitude weights, and
re-applies the masks after every optimizer step so pruned weights stay zero (Adam's moments would
otherwise revive them). Biases are left dense, as tfmot does.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

PRUNABLE = (keras.layers.Conv2D, keras.layers.Dense)


def prunable_kernels(model: keras.Model) -> list[Any]:
    return [layer.kernel for layer in model.layers if isinstance(layer, PRUNABLE)]


def sparsity(model: keras.Model) -> float:
    """Fraction of exactly-zero weights across the prunable kernels."""
    kernels = [ops.convert_to_numpy(k) for k in prunable_kernels(model)]
    total = sum(k.size for k in kernels)
    return float(sum(int(np.count_nonzero(k == 0)) for k in kernels) / total) if total else 0.0


def magnitude_mask(weights: Any, target: float) -> Any:
    """1 where a weight is among the largest ``1 - target`` of ``|weights|``, 0 elsewhere."""
    magnitude = ops.reshape(ops.abs(weights), (-1,))
    count = round(target * int(magnitude.shape[0]))
    if count <= 0:
        return ops.ones_like(weights)
    threshold = ops.sort(magnitude)[count - 1]
    return ops.cast(ops.greater(ops.abs(weights), threshold), weights.dtype)


class MagnitudePruning(keras.callbacks.Callback):
    """Prune Conv/Dense kernels to ``target_sparsity`` by ``end_step``, then hold them there.

    ``frequency`` steps apart the masks are recomputed from the current magnitudes; in between, and
    after the last update, every batch ends by multiplying each kernel by its mask.
    """

    def __init__(self, target_sparsity: float, end_step: int, *, begin_step: int = 0, frequency: int = 10) -> None:
        super().__init__()
        if not 0 <= target_sparsity < 1:
            raise ValueError(f"target sparsity must be in [0, 1), got {target_sparsity}")
        self.target_sparsity = target_sparsity
        self.begin_step = begin_step
        self.end_step = max(end_step, begin_step + 1)
        self.frequency = max(1, frequency)
        self.step = 0
        self.masks: list[Any] = []

    def sparsity_at(self, step: int) -> float:
        """tfmot's PolynomialDecay with power 3: fast early, gentle as the target nears."""
        progress = min(max((step - self.begin_step) / (self.end_step - self.begin_step), 0.0), 1.0)
        return self.target_sparsity * (1 - (1 - progress) ** 3)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.masks = [ops.ones_like(k) for k in prunable_kernels(self.model)]

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.step += 1
        kernels = prunable_kernels(self.model)
        if self.begin_step <= self.step <= self.end_step and (
            self.step % self.frequency == 0 or self.step == self.end_step
        ):
            target = self.sparsity_at(self.step)
            # Masked weights are zero, so they stay among the smallest: masks only ever grow.
            self.masks = [magnitude_mask(k * m, target) for k, m in zip(kernels, self.masks, strict=True)]
        for kernel, mask in zip(kernels, self.masks, strict=True):
            kernel.assign(kernel * mask)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # Whatever step the schedule reached, leave the model at the target: the export must be this sparse.
        kernels = prunable_kernels(self.model)
        self.masks = [magnitude_mask(k * m, self.target_sparsity) for k, m in zip(kernels, self.masks, strict=True)]
        for kernel, mask in zip(kernels, self.masks, strict=True):
            kernel.assign(kernel * mask)


def prune_fine_tune(
    teacher: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    target_sparsity: float,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    callbacks: list[Any] | None = None,
) -> keras.Model:
    """A copy of the trained ``teacher``, fine-tuned while its kernels are pruned to the target.

    Pruning a trained model and fine-tuning (rather than training a second model from scratch)
    is tfmot's recommended recipe and costs a few epochs instead of a whole run. The sparsity
    ramp ends two thirds of the way through, so the last third recovers accuracy at the target.
    """
    model = keras.models.clone_model(teacher)
    model.set_weights(teacher.get_weights())
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    steps = epochs * -(-len(x) // batch_size)
    pruning = MagnitudePruning(target_sparsity, end_step=max(1, (2 * steps) // 3), frequency=max(1, steps // 30))
    model.fit(x, y, epochs=epochs, batch_size=batch_size, callbacks=[pruning, *(callbacks or [])], verbose=0)
    return model
