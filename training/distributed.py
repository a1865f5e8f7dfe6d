"""Training past one machine: SageMaker's cluster in, a ``tf.distribute`` strategy, the chief and the batch rule out.

    dist = distributed.setup(env)                # before TensorFlow makes its first tensor
    with dist.scope():
        model = build()                          # variables mirrored on every replica of every worker
    dist.fit(model, x, y, batch_size=per_replica, epochs=...)   # model.fit with the global batch
    if dist.is_chief:
        model = dist.detach(model)               # export, compress and publish here only

One host (``maas train local``, ``--instance-count 1``): no strategy at all, the job runs as it always
did. Several hosts: ``tf.distribute.MultiWorkerMirroredStrategy``, synchronous data parallelism: every
worker holds all the weights, computes gradients on its share of each global batch, and the
gradients are all-reduced before every update, so every worker ends each step with the same weights.

Keras 3 on the TensorFlow backend takes the strategy from ``strategy.scope()`` when the model is built
(its ``TensorFlowTrainer`` keeps ``tf.distribute.get_strategy()``) and ``model.fit`` distributes
numpy inputs itself: each worker loads the whole channel (``S3DataDistributionType: FullyReplicated``)
and TensorFlow's auto-sharding gives each its share of every batch (sharding by data, there being no
files to shard). The JAX and torch backends run one worker only.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.sagemaker_env import TrainingEnv

# The port each worker listens on when TF_CONFIG is built here: TensorFlow's SageMakerClusterResolver's
# (tensorflow/python/distribute/cluster_resolver/sagemaker_cluster_resolver.py), whose cluster this
# repeats: every host a worker, hosts sorted, the task index the current host's place among them.
DEFAULT_PORT = 2223


class DistributedError(RuntimeError):
    """The job cannot run on the cluster it was given; the message says why and what to change."""


def tf_config(hosts: tuple[str, ...], current_host: str, port: int = DEFAULT_PORT) -> dict[str, Any]:
    workers = sorted(hosts)
    return {
        "cluster": {"worker": [f"{host}:{port}" for host in workers]},
        "task": {"type": "worker", "index": workers.index(current_host)},
    }


def chief_in(config: Mapping[str, Any]) -> bool:
    """The task that exports and publishes: the ``chief`` if TF_CONFIG names one, else worker 0
    (tf.distribute's own rule, ``multi_worker_util.is_chief``)."""
    task = config.get("task") or {}
    if "chief" in (config.get("cluster") or {}):
        return bool(task.get("type") == "chief")
    return bool(task.get("type") == "worker" and int(task.get("index", 0)) == 0)


@dataclass(frozen=True)
class Distribution:
    strategy: Any  # tf.distribute.MultiWorkerMirroredStrategy on several hosts; None on one
    workers: int
    is_chief: bool

    @property
    def replicas(self) -> int:
        """Model replicas training in step: one per GPU (or per CPU-only worker) on every worker."""
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """Build (or restore) the model in here, so its variables are mirrored across the workers."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def global_batch_size(self, per_replica: int) -> int:
        """The ``batch_size`` hyperparameter is per replica; ``model.fit`` takes the global batch,
        per replica x replicas. One replica: unchanged. The learning rate is not scaled with it."""
        return per_replica * self.replicas

    def fit(self, model: Any, x: Any, y: Any, *, batch_size: int, **options: Any) -> Any:
        """``model.fit(x, y, ...)`` with ``batch_size`` per replica (see ``global_batch_size``)."""
        if self.strategy is None:
            return model.fit(x, y, batch_size=batch_size, **options)
        with self.strategy.scope():
            # Keras 3's symbolic build, from these shapes: its own reduces the first distributed batch.
            model._symbolic_build(data_batch=(x[:batch_size], y[:batch_size]))
        with _keras_multi_worker_fixes(model):
            return model.fit(x, y, batch_size=self.global_batch_size(batch_size), **options)

    def detach(self, model: Any) -> Any:
        """The trained model on no strategy, for the chief's work alone after ``fit``.

        ``predict`` and ``evaluate`` on a model built under a multi-worker strategy shard their input
        across the workers too: the chief alone would get its share of the rows, or wait for workers that
        have left. A ``.keras`` round trip gives the same weights and compile state on the default strategy.
        """
        if self.strategy is None:
            return model
        import keras

        with tempfile.TemporaryDirectory(prefix="maas-detach-") as tmp:
            path = Path(tmp) / "model.keras"
            model.save(path)
            return keras.models.load_model(path)

    def describe(self) -> str:
        role = "the chief: it exports and publishes" if self.is_chief else "not the chief: it trains only"
        return f"{self.workers} worker(s), {self.replicas} replica(s) in sync; this one is {role}"


def setup(env: TrainingEnv, environ: MutableMapping[str, str] = os.environ) -> Distribution:
    """The strategy for this job's cluster; on several hosts, before TensorFlow makes its first tensor.

    ``maas train submit --instance-count N`` asks the SageMaker TensorFlow toolkit for TF_CONFIG
    (``training.submit.MWMS_HYPERPARAMETER``); it is used as given. Without it (another image), it is
    built from the hosts here and set in the environment, where TensorFlow's resolver reads it.
    """
    if len(env.hosts) == 1:
        return Distribution(strategy=None, workers=1, is_chief=True)
    import keras

    backend = keras.config.backend()
    if backend != "tensorflow":
        raise DistributedError(
            f"{len(env.hosts)} instances need the tensorflow Keras backend (MultiWorkerMirroredStrategy); "
            f"this job runs Keras on {backend!r}: set KERAS_BACKEND=tensorflow or use --instance-count 1"
        )
    config = _tf_config_for(env, environ)
    import tensorflow as tf

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Distribution(strategy=strategy, workers=len(env.hosts), is_chief=chief_in(config))


def _tf_config_for(env: TrainingEnv, environ: MutableMapping[str, str]) -> dict[str, Any]:
    given = environ.get("TF_CONFIG")
    if not given:
        config = tf_config(env.hosts, env.current_host)
        environ["TF_CONFIG"] = json.dumps(config)
        return config
    try:
        config = json.loads(given)
    except ValueError as exc:
        raise DistributedError(f"TF_CONFIG is not JSON: {exc}") from None
    tasks = sum(len(config.get("cluster", {}).get(kind, [])) for kind in ("chief", "worker"))
    if not isinstance(config.get("task"), dict) or tasks != len(env.hosts):
        raise DistributedError(
            f"TF_CONFIG names {tasks} chief/worker tasks and a task of {config.get('task')!r}; "
            f"the job has {len(env.hosts)} hosts {list(env.hosts)}"
        )
    return dict(config)


@contextlib.contextmanager
def _keras_multi_worker_fixes(model: Any) -> Iterator[None]:
    """Around ``fit`` on several workers: two places where Keras 3 (3.15, TensorFlow 2.21 backend)
    breaks under MultiWorkerMirroredStrategy (keras-team/keras#20585, tensorflow/tensorflow#72388).

    - Before training, Keras builds the model symbolically from the first distributed batch, which it
      gets by ``strategy.reduce("MEAN", (x, y))`` over the whole structure: one worker's
      MirroredStrategy hands a structure back unreduced, MultiWorkerMirroredStrategy tries to all-reduce
      it and fails. ``Distribution.fit`` has built the model from the batch's shapes already, so that
      step is skipped.
    - After each step Keras averages the logs (loss and metrics, scalars on every replica) with
      ``strategy.reduce("MEAN", value, axis=0)``, and a scalar has no axis 0. Averaged over the replicas
      with ``axis=None`` instead, which is what the reduction means.

    Both are Keras internals: tests/training_job/test_distributed.py trains two real workers, so a
    Keras that moves them fails there, not on SageMaker.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction not in ("auto", "mean") or not trainer._collective_all_reduce_multi_worker(strategy):
            return original(values, strategy, reduction)
        return tf.nest.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=None) if isinstance(v, tf.distribute.DistributedValues) else v,
            values,
        )

    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        trainer.reduce_per_replica = original
        del model._maybe_symbolic_build
