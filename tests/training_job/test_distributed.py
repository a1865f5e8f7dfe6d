"""Training past one machine: SageMaker's cluster read back, and two real workers training one model.

The two-worker test starts two processes on 127.0.0.1, each with its own ``/opt/ml`` tree and the
environment SageMaker and its TensorFlow toolkit give an instance of a two-instance job
(``resourceconfig.json``, ``SM_HOSTS``, ``SM_CURRENT_HOST``, ``SM_NUM_GPUS``, ``TF_CONFIG``), and runs the
job's training step through ``training.distributed`` as ``training/job.py`` does: build under
``scope()``, ``fit`` with the global batch, and only the chief goes on to export and publish.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.distributed import DistributedError, chief_in, setup, tf_config
from training.sagemaker_env import LOCAL_HOST, read_env
from training.submit import MWMS_HYPERPARAMETER

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ["algo-1", "algo-2"]
PER_REPLICA_BATCH = 16
EPOCHS = 3
ROWS = 256


def _opt_ml(root: Path, current_host: str, hosts: list[str] = HOSTS) -> Path:
    """An instance's /opt/ml as SageMaker lays it out, with its resourceconfig.json."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text("{}")
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": current_host, "hosts": hosts, "network_interface_name": "eth0"})
    )
    (root / "input" / "data" / "train").mkdir(parents=True)
    return root


# --- the cluster, read back -----------------------------------------------------------------------


def test_one_host_when_sagemaker_names_none(tmp_path: Path) -> None:
    env = read_env(tmp_path, {})
    assert (env.hosts, env.current_host, env.num_gpus) == ((LOCAL_HOST,), LOCAL_HOST, 0)
    dist = setup(env, {})
    # The job as it always ran: no strategy, the batch as given, this worker publishes.
    assert dist.strategy is None and dist.is_chief and dist.workers == 1
    assert dist.global_batch_size(32) == 32


def test_the_cluster_from_resourceconfig_and_sm_variables(tmp_path: Path) -> None:
    root = _opt_ml(tmp_path, "algo-2")
    env = read_env(root, {"SM_NUM_GPUS": "4"})
    assert (env.hosts, env.current_host, env.num_gpus) == (tuple(HOSTS), "algo-2", 4)
    # The toolkit's SM_HOSTS / SM_CURRENT_HOST win over the file, as they do in its own environment.
    env = read_env(root, {"SM_HOSTS": json.dumps(["algo-1", "algo-2", "algo-3"]), "SM_CURRENT_HOST": "algo-3"})
    assert (env.hosts, env.current_host) == (("algo-1", "algo-2", "algo-3"), "algo-3")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SM_HOSTS": "algo-1,algo-2"}, "SM_HOSTS must be a JSON list"),
        ({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-9"}, "'algo-9' must be one of"),
        ({"SM_HOSTS": "[]", "SM_CURRENT_HOST": "algo-1"}, "non-empty list of host names"),
        ({"SM_HOSTS": '["algo-1", "algo-1"]', "SM_CURRENT_HOST": "algo-1"}, "distinct hosts"),
    ],
)
def test_a_cluster_that_makes_no_sense_is_refused(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_env(tmp_path, environ)


def test_a_resourceconfig_that_is_not_a_json_object_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "resourceconfig.json").write_text('["algo-1"]')
    with pytest.raises(ValueError, match=r"resourceconfig\.json must hold a JSON object, got list"):
        read_env(tmp_path, {})


def test_the_chief_is_worker_zero_unless_tf_config_names_a_chief() -> None:
    cluster = {"worker": ["a:1", "b:1"]}
    assert chief_in({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    assert not chief_in({"cluster": cluster, "task": {"type": "worker", "index": 1}})
    with_chief = {"chief": ["c:1"], **cluster}
    assert chief_in({"cluster": with_chief, "task": {"type": "chief", "index": 0}})
    assert not chief_in({"cluster": with_chief, "task": {"type": "worker", "index": 0}})


def test_a_tf_config_for_another_cluster_is_refused(tmp_path: Path) -> None:
    env = read_env(_opt_ml(tmp_path, "algo-1"), {})
    wrong = {"cluster": {"worker": ["a:1", "b:1", "c:1"]}, "task": {"type": "worker", "index": 0}}
    with pytest.raises(DistributedError, match=r"names 3 chief/worker tasks.*the job has 2 hosts"):
        setup(env, {"TF_CONFIG": json.dumps(wrong)})
    with pytest.raises(DistributedError, match="TF_CONFIG is not JSON"):
        setup(env, {"TF_CONFIG": "worker=0"})


def test_other_keras_backends_train_on_one_worker_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    env = read_env(_opt_ml(tmp_path, "algo-1"), {})
    monkeypatch.setattr(keras.config, "backend", lambda: "jax")  # neither JAX nor torch is installed here
    with pytest.raises(DistributedError, match=r"2 instances need the tensorflow Keras backend.*'jax'"):
        setup(env, {})


@pytest.mark.training
def test_tf_config_built_here_is_tensorflows_own_reading_of_the_sagemaker_hosts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the toolkit's TF_CONFIG the job builds one; TensorFlow's SageMakerClusterResolver,
    reading SM_HOSTS and SM_CURRENT_HOST, sees the same cluster and the same task."""
    from tensorflow.python.distribute.cluster_resolver.sagemaker_cluster_resolver import SageMakerClusterResolver

    hosts = ("algo-2", "algo-10", "algo-1")
    for current in hosts:
        monkeypatch.setenv("SM_HOSTS", json.dumps(list(hosts)))
        monkeypatch.setenv("SM_CURRENT_HOST", current)
        resolver = SageMakerClusterResolver()
        built = tf_config(hosts, current)
        assert built["cluster"] == resolver.cluster_spec().as_dict()
        assert (built["task"]["type"], built["task"]["index"]) == (resolver.task_type, resolver.task_id)
    # Exactly one of them is the chief: the first in TensorFlow's order.
    assert [chief_in(tf_config(hosts, h)) for h in hosts] == [False, False, True]


# --- two workers, one model -----------------------------------------------------------------------


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 1.5]) > 0).astype("int64")
    return x, y


def _worker(root: Path) -> None:
    """One instance's training step, through the API training/job.py uses; writes what it did."""
    import keras

    from training import checkpoints

    env = read_env(root)
    dist = setup(env)  # first: MultiWorkerMirroredStrategy must exist before TensorFlow's first tensor
    keras.utils.set_random_seed(env.hosts.index(env.current_host))  # different seeds: fit must agree anyway
    x, y = _data()
    with dist.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
        model.compile(
            optimizer=keras.optimizers.Adam(0.01),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    saved_in = root / "checkpoints"
    saved_in.mkdir()
    # Checkpoints on the chief only: SageMaker syncs every instance's folder to the same S3 prefix.
    callbacks = [checkpoints.SaveEveryEpoch(saved_in, "fingerprint")] if dist.is_chief else []
    history = dist.fit(model, x, y, batch_size=PER_REPLICA_BATCH, epochs=EPOCHS, callbacks=callbacks, verbose=0)
    out = root / "output" / "data"
    out.mkdir(parents=True)
    np.savez(out / "weights.npz", *model.get_weights())
    report: dict[str, Any] = {
        "host": env.current_host,
        "is_chief": dist.is_chief,
        "replicas": dist.replicas,
        "global_batch": dist.global_batch_size(PER_REPLICA_BATCH),
        "loss": history.history["loss"],
        "published": False,
    }
    if dist.is_chief:  # what the job does next on the chief alone: measure on every held-out row, publish
        alone = dist.detach(model)
        report["predicted_rows"] = int(alone.predict(x, verbose=0).shape[0])
        report["accuracy"] = float(np.mean(np.argmax(alone.predict(x, verbose=0), axis=1) == y))
        report["published"] = True
    (out / "report.json").write_text(json.dumps(report))


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _run_workers(roots: list[Path], command: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """One process per host of HOSTS, each with its /opt/ml root (``{root}`` in ``command``) and the
    environment SageMaker's training toolkit gives that instance of a multi-instance job; their logs."""
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(len(HOSTS))]
    workers = []
    for index, (host, root) in enumerate(zip(HOSTS, roots, strict=True)):
        instance = {
            **os.environ,
            **(environ or {}),
            "SM_HOSTS": json.dumps(HOSTS),
            "SM_CURRENT_HOST": host,
            "SM_NUM_GPUS": "0",
            # The TF_CONFIG the toolkit's multi-worker mirrored strategy option adds, on the loopback here.
            "TF_CONFIG": json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}),
            "KERAS_BACKEND": "tensorflow",
            "CUDA_VISIBLE_DEVICES": "",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "TF_NUM_INTRAOP_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
        }
        argv = [part.replace("{root}", str(root)) for part in command]
        workers.append(
            subprocess.Popen(argv, env=instance, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        )
    try:
        logs = [w.communicate(timeout=240)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    assert [w.returncode for w in workers] == [0] * len(HOSTS), "\n".join(log[-3000:] for log in logs)
    return logs


@pytest.mark.training
def test_two_workers_train_one_model_and_only_the_chief_publishes(tmp_path: Path) -> None:
    roots = [_opt_ml(tmp_path / host, host) for host in HOSTS]
    _run_workers(roots, [sys.executable, __file__, "{root}"])

    reports = [json.loads((r / "output" / "data" / "report.json").read_text()) for r in roots]
    # Two replicas in step; the per-replica batch doubles into the global one.
    assert [r["replicas"] for r in reports] == [2, 2]
    assert [r["global_batch"] for r in reports] == [2 * PER_REPLICA_BATCH] * 2
    # One model: the same weights on both workers (they began from different seeds), and the loss
    # each one reports is the all-reduced one.
    weights = [np.load(r / "output" / "data" / "weights.npz") for r in roots]
    assert len(weights[0].files) == len(weights[1].files) == 4
    for name in weights[0].files:
        np.testing.assert_array_equal(weights[0][name], weights[1][name])
    assert reports[0]["loss"] == pytest.approx(reports[1]["loss"])
    assert reports[0]["loss"][-1] < reports[0]["loss"][0]
    # Exactly one publishes, the chief (algo-1, worker 0), and only it checkpoints.
    assert [(r["host"], r["is_chief"], r["published"]) for r in reports] == [
        ("algo-1", True, True),
        ("algo-2", False, False),
    ]
    assert (roots[0] / "checkpoints" / checkpoints_file()).exists()
    assert list((roots[1] / "checkpoints").iterdir()) == []
    # The chief's own measurement covers every row, not its shard of them.
    assert reports[0]["predicted_rows"] == ROWS and reports[0]["accuracy"] > 0.8


@pytest.mark.training
@pytest.mark.skipif(
    "distributed.setup" not in (ROOT / "training" / "job.py").read_text(),
    reason="training/job.py does not train through training.distributed yet",
)
def test_the_job_on_two_instances_publishes_one_version(tmp_path: Path) -> None:
    """The whole job, as `maas train submit --instance-count 2` runs it: both instances train, the
    chief alone exports, compresses and publishes, to a real S3 API (moto's server on 127.0.0.1)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from training.data import write_digits_channel

    roots = []
    for host in HOSTS:
        root = _opt_ml(tmp_path / host, host)
        write_digits_channel(root / "input" / "data" / "train", seed=1)
        hyperparameters = {"epochs": 2, "compression": "int8-dynamic", "seed": 7, MWMS_HYPERPARAMETER: True}
        (root / "input" / "config" / "hyperparameters.json").write_text(
            json.dumps({k: json.dumps(v) for k, v in hyperparameters.items()})
        )
        roots.append(root)
    port = _free_ports(1)[0]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", **{k.lower(): v for k, v in aws.items() if "KEY" in k}
        )
        s3.create_bucket(Bucket="maas-distributed")
        environ = {
            **aws,
            "AWS_ENDPOINT_URL_S3": endpoint,
            "MAAS_MODEL_BUCKET": "maas-distributed",
            "TRAINING_JOB_NAME": "digits-2x",
        }
        logs = _run_workers(roots, [sys.executable, "-m", "training.job", "--sm-root", "{root}"], environ)
        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="maas-distributed")["Contents"])
    finally:
        server.stop()
    (version,) = {key.split("/")[2] for key in keys if key.startswith("models/digits/") and "/numbers/" not in key}
    assert keys == [  # one version, with its number
        f"models/digits/{version}/manifest.json",
        f"models/digits/{version}/model.onnx",
        "models/digits/numbers/1.json",
    ]
    assert "published: s3://maas-distributed/models/digits/" in logs[0]
    assert "published: no (not the chief" in logs[1] and not (roots[1] / "model").exists()
    # Both trained the one model: every epoch's all-reduced metrics read the same on both.
    epochs = [[line for line in log.splitlines() if line.startswith("epoch=")] for log in logs]
    assert len(epochs[0]) == 2 and epochs[0] == epochs[1]


def checkpoints_file() -> str:
    from training.checkpoints import MODEL_FILE

    return MODEL_FILE


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
