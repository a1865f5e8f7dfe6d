"""The training job end to end under the SageMaker contract: fake /opt/ml tree, moto S3 registry.

One tiny job (3 epochs, every compression candidate) is shared by the module; the failure cases
stop before Keras is imported.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from maas_core.shared.aws import s3_client
from maas_core.shared.errors import VersionExists
from maas_core.shared.manifest import REQUIRED_FIELDS, Manifest
from maas_core.shared.registry import Registry
from training.compress import DEFAULT_MAX_ACCURACY_DROP_POINTS, METHODS, Candidate, choose
from training.data import load_channel, split_holdout, write_digits_channel
from training.job import ARTIFACTS, METRIC_DEFINITIONS, main
from training.sagemaker_env import read_hyperparameters

pytestmark = pytest.mark.training

BUCKET = "maas-test-models"
JOB_NAME = "digits-test-job-0001"
TINY: dict[str, Any] = {
    "epochs": 3,
    "batch_size": 32,
    "seed": 7,
    "model_name": "digits-test",
    "compression": "all",
    "pruning_epochs": 1,
    "distillation_epochs": 3,
    "calibration_rows": 100,
}


def fake_opt_ml(root: Path, hyperparameters: dict) -> Path:
    """The tree SageMaker lays out: channel data, hyperparameters.json with JSON-encoded values."""
    write_digits_channel(root / "input" / "data" / "train", seed=1)
    return write_hyperparameters(root, hyperparameters)


def write_hyperparameters(root: Path, hyperparameters: dict) -> Path:
    """input/config/hyperparameters.json with JSON-encoded values, as SageMaker writes it."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({k: json.dumps(v) for k, v in hyperparameters.items()}))
    return root


@contextlib.contextmanager
def mocked_registry(mp: pytest.MonkeyPatch, bucket: str):
    """A moto S3 with the registry bucket, the job pointed at it, and the cached client reset around it."""
    clean_env(mp)
    mp.setenv("MAAS_MODEL_BUCKET", bucket)
    s3_client.cache_clear()
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=bucket)
        yield
    s3_client.cache_clear()


def run_to_publish(root: Path) -> SimpleNamespace:
    """Run the job in-process; it must succeed and publish. Returns its root, log and published manifest."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main([], root=root)
    failure = root / "output" / "failure"
    assert code == 0, failure.read_text() if failure.exists() else stdout.getvalue()
    published = json.loads((root / "output" / "data" / "published.json").read_text())
    return SimpleNamespace(root=root, stdout=stdout.getvalue(), published=published)


def clean_env(mp: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("SM_", "AWS_")) or key in ("MAAS_MODEL_BUCKET", "TRAINING_JOB_NAME"):
            mp.delenv(key)
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Run the tiny job once against a mocked registry bucket; the mock stays up for the module."""
    with pytest.MonkeyPatch.context() as mp:
        clean_env(mp)
        mp.setenv("MAAS_MODEL_BUCKET", BUCKET)
        mp.setenv("TRAINING_JOB_NAME", JOB_NAME)
        mp.setenv("SM_CURRENT_INSTANCE_TYPE", "ml.g5.xlarge")
        s3_client.cache_clear()
        with mock_aws():
            boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
            root = fake_opt_ml(tmp_path_factory.mktemp("opt_ml"), TINY)
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                code = main(["--sm-root", str(root)])
            published = json.loads((root / "output" / "data" / "published.json").read_text()) if code == 0 else {}
            yield SimpleNamespace(code=code, root=root, stdout=stdout.getvalue(), published=published)
        s3_client.cache_clear()


@pytest.fixture
def failing_root(tmp_path, monkeypatch):
    clean_env(monkeypatch)
    root = fake_opt_ml(tmp_path / "opt_ml", {"epochs": 1})
    for f in (root / "input" / "data" / "train").iterdir():
        f.unlink()
    return root


def test_job_succeeds_and_leaves_artifacts_only_in_the_model_dir(job):
    assert job.code == 0, (job.root / "output" / "failure").read_text()
    model_dir = job.root / "model"
    assert not (job.root / "output" / "failure").exists()
    local = json.loads((model_dir / "manifest.json").read_text())
    candidate_files = {c["file"] for c in local["compression"]["candidates"]}
    assert sorted(p.name for p in model_dir.iterdir()) == sorted({*ARTIFACTS, *candidate_files})
    assert not {"name", "version", "artifact"} & set(local), "registry-only fields belong to the published manifest"
    chosen = next(c["file"] for c in local["compression"]["candidates"] if c["accepted"])
    assert (model_dir / "model.onnx").read_bytes() == (model_dir / chosen).read_bytes()


def test_epoch_lines_match_the_metric_definitions(job):
    lines = [line for line in job.stdout.splitlines() if line.startswith("epoch=")]
    assert len(lines) == TINY["epochs"]
    for definition in METRIC_DEFINITIONS:
        values = [float(m.group(1)) for line in lines if (m := re.search(definition["Regex"], line))]
        assert len(values) == TINY["epochs"], definition
        # The candidates' own training (pruning, distillation) prints lines the regexes skip.
        assert len([line for line in job.stdout.splitlines() if re.search(definition["Regex"], line)]) == len(values)
    assert "pruned: epoch 1/1 " in job.stdout and "distilled: epoch 3/3 " in job.stdout
    for method in METHODS:
        assert re.search(rf"^candidate {method}: [0-9,]+ bytes, accuracy [0-9.]+, [0-9.]+/[0-9.]+ ms", job.stdout, re.M)
    assert f"version={job.published['version']}" in job.stdout


def test_published_manifest_is_complete_with_measured_numbers(job):
    registry = Registry(BUCKET)
    name, version = TINY["model_name"], job.published["version"]
    manifest = registry.read_manifest(name, version).to_json()
    Manifest.from_json(manifest, name=name, version=version)
    assert set(REQUIRED_FIELDS) <= set(manifest)
    assert manifest["inputs"] == [{"name": "image", "dtype": "float32", "shape": [None, 8, 8, 1]}]
    assert manifest["outputs"] == [{"name": "probabilities", "dtype": "float32", "shape": [None, 10]}]
    assert manifest["labels"] == [str(i) for i in range(10)]
    assert "1/16" in " ".join(manifest["preprocessing"]["in_graph"])

    compression, metrics = manifest["compression"], manifest["metrics"]
    assert 0 < compression["compressed_size_bytes"] < compression["fp32_size_bytes"]
    assert compression["eval_rows"] == metrics["eval_rows"] == 360
    assert compression["max_accuracy_drop_points"] == 0.5
    candidates = {c["method"]: c for c in compression["candidates"]}
    assert list(candidates) == list(METHODS), "compression=all lists every candidate, fp32 first"
    accepted = [c for c in compression["candidates"] if c["accepted"]]
    assert [c["method"] for c in accepted] == [compression["method"]]
    assert compression["compressed_size_bytes"] == accepted[0]["size_bytes"] == manifest["artifact"]["size_bytes"]
    for candidate in compression["candidates"]:
        assert candidate["reason"] and not candidate["reason"].startswith("rejected:"), candidate
        assert 0 < candidate["gzip_bytes"] < candidate["size_bytes"] and candidate["latency_ms"] > 0
        assert candidate["batch_latency_ms"] > candidate["latency_ms"] and candidate["usd_per_million"] > 0
        assert 0.5 < candidate["accuracy"] <= 1 and candidate["parity_max_abs_diff"] is not None
    # The default objective, cost: of those within the gate, the smallest file within 10% of the cheapest.
    assert compression["objective"] == "cost" and compression["cost_model"]["memory_mb"] == 1024
    fp32 = candidates["fp32"]
    within = [c for c in candidates.values() if (fp32["accuracy"] - c["accuracy"]) * 100 <= 0.5 + 1e-9]
    cheapest = min(c["usd_per_million"] for c in within)
    near = [c for c in within if c["usd_per_million"] <= cheapest * 1.1]
    assert accepted[0]["size_bytes"] == min(c["size_bytes"] for c in near)
    for method in ("int8-dynamic", "int8-static", "pruned"):
        assert candidates[method]["size_bytes"] < 0.3 * fp32["size_bytes"], method
    assert 0.45 * fp32["size_bytes"] < candidates["fp16"]["size_bytes"] < 0.55 * fp32["size_bytes"]
    assert candidates["int8-static"]["details"] == {"calibration_rows": 100, "calibration_set": "train"} | {
        "top1_agreement_with_source": candidates["int8-static"]["details"]["top1_agreement_with_source"]
    }
    pruned = candidates["pruned"]["details"]
    assert pruned["sparsity"] >= 0.5 and pruned["fp32_export_parity_max_abs_diff"] <= 1e-4
    # Zeros do not shrink an ONNX file, but they do shrink its download.
    assert candidates["pruned"]["gzip_bytes"] < 0.85 * candidates["int8-dynamic"]["gzip_bytes"]
    distilled = candidates["distilled"]["details"]
    assert distilled["student_parameters"] < distilled["teacher_parameters"] / 5
    assert candidates["distilled"]["parity_max_abs_diff"] <= 1e-4
    assert metrics["accuracy"] > 0.5 and metrics["fp32_accuracy"] > 0.5
    assert metrics["accuracy"] == accepted[0]["accuracy"]
    assert metrics["parity_max_abs_diff"] <= 1e-4

    job_info = manifest["training_job"]
    assert job_info["id"] == JOB_NAME and job_info["instance_type"] == "ml.g5.xlarge"
    assert job_info["duration_s"] > 0
    assert job_info["hyperparameters"]["epochs"] == 3 and job_info["hyperparameters"]["seed"] == 7
    assert job_info["hyperparameters"]["compression"] == ",".join(METHODS)
    assert manifest["framework"]["onnx_opset"] == 17
    assert set(manifest["framework"]) == {
        "tensorflow",
        "keras",
        "keras_backend",
        "tf2onnx",
        "onnx",
        "onnx_opset",
        "onnxruntime",
    }


def test_published_model_computes_what_keras_computes(job):
    import keras
    import onnxruntime as ort

    registry = Registry(BUCKET)
    name, version = TINY["model_name"], job.published["version"]
    model_bytes = registry.read_model(name, version, registry.read_manifest(name, version))  # checks sha256
    held = split_holdout(load_channel(job.root / "input" / "data" / "train"), 0.2, TINY["seed"])[1]
    keras_model = keras.saving.load_model(job.root / "model" / "model.keras")
    expected = keras_model.predict(held.x, verbose=0)

    def run(model: bytes | str) -> np.ndarray:
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        return session.run(["probabilities"], {"image": held.x})[0]

    fp32 = run(str(job.root / "model" / "model.fp32.onnx"))
    assert np.max(np.abs(fp32 - expected)) <= 1e-4
    published = run(model_bytes)
    accuracy = float(np.mean(published.argmax(1) == held.y))
    assert accuracy == pytest.approx(job.published["metrics"]["accuracy"])
    assert np.mean(published.argmax(1) == expected.argmax(1)) > 0.97


def test_the_job_adds_an_immutable_version_and_leaves_aliases_alone(job):
    registry = Registry(BUCKET)
    name, version = TINY["model_name"], job.published["version"]
    assert registry.list_aliases(name) == {}, "the training role may not write aliases: a promote sets them"
    assert registry.list_versions(name) == [version]
    model_bytes = (job.root / "model" / "model.onnx").read_bytes()
    local = json.loads((job.root / "model" / "manifest.json").read_text())
    with pytest.raises(VersionExists):
        registry.publish(name, model_bytes, local, version=version)
    assert registry.read_manifest(name, version).created_at == job.published["created_at"]


def test_validation_channel_is_the_held_out_set_and_no_bucket_means_no_publish(tmp_path, monkeypatch):
    clean_env(monkeypatch)
    root = fake_opt_ml(tmp_path / "opt_ml", {"epochs": 1})
    data = load_channel(root / "input" / "data" / "train")
    validation = root / "input" / "data" / "validation"
    validation.mkdir()
    np.savez(validation / "part-0.npz", x=data.x[:100, :, :, 0], y=data.y[:100])  # N x 8 x 8 is accepted too
    (validation / "labels.json").write_text(json.dumps(data.labels))
    assert main([], root=root) == 0
    manifest = json.loads((root / "model" / "manifest.json").read_text())
    assert manifest["metrics"]["eval_rows"] == 100 and manifest["metrics"]["eval_set"] == "validation channel"
    assert manifest["training_job"]["train_rows"] == len(data)
    assert manifest["training_job"]["id"].startswith("local-") and manifest["training_job"]["instance_type"] == "local"
    methods = [c["method"] for c in manifest["compression"]["candidates"]]
    assert methods == ["fp32", "int8-dynamic", "int8-static", "fp16"], "the default menu needs no extra training"
    assert not (root / "output" / "data" / "published.json").exists()


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({}, "no .npz, .csv or .jsonl files"),
        ({"digits.npz": b"this is not an archive"}, "not a readable .npz archive"),
        ({"notes.txt": b"hello"}, "no .npz, .csv or .jsonl files"),
    ],
)
def test_bad_channel_fails_the_job_with_a_reason(failing_root, files, reason):
    train = failing_root / "input" / "data" / "train"
    for file_name, content in files.items():
        (train / file_name).write_bytes(content)
    assert main([], root=failing_root) != 0
    failure = (failing_root / "output" / "failure").read_text()
    assert (reason in failure and "channel" in failure) or "digits.npz" in failure
    assert len(failure) <= 1025
    assert not (failing_root / "model").exists()


def test_channel_missing_labels_array_is_named(failing_root):
    np.savez(failing_root / "input" / "data" / "train" / "part-0.npz", x=np.zeros((4, 8, 8, 1), np.float32))
    assert main([], root=failing_root) == 1
    assert "part-0.npz: expected arrays 'x' and 'y', missing ['y']" in (failing_root / "output" / "failure").read_text()


@pytest.mark.parametrize(("labels", "named"), [([0, 1, 12, 3], "[12]"), ([0, -1, 2, 3], "[-1]")])
def test_labels_out_of_range_fail_fast_naming_them(failing_root, labels, named):
    train = failing_root / "input" / "data" / "train"
    np.savez(train / "part-0.npz", x=np.zeros((4, 8, 8, 1), np.float32), y=np.asarray(labels))
    (train / "labels.json").write_text(json.dumps([str(i) for i in range(10)]))
    assert main([], root=failing_root) == 1
    failure = (failing_root / "output" / "failure").read_text()
    assert f"class ids {named} are out of range" in failure


def test_unknown_hyperparameter_fails_before_training(failing_root):
    write_digits_channel(failing_root / "input" / "data" / "train")
    (failing_root / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"epoch": "3"}))
    assert main([], root=failing_root) == 1
    assert "unknown hyperparameters ['epoch']" in (failing_root / "output" / "failure").read_text()


@pytest.mark.parametrize(
    ("int8_accuracy", "published"), [(0.980, "int8-dynamic"), (0.975, "int8-dynamic"), (0.9749, "fp32")]
)
def test_accuracy_gate_allows_half_a_point(int8_accuracy, published):
    fp32 = Candidate("fp32", "model.fp32.onnx", 600_000, 0.980, 0.03)
    int8 = Candidate("int8-dynamic", "model.int8.onnx", 160_000, int8_accuracy, 0.1)
    chosen = choose([fp32, int8], DEFAULT_MAX_ACCURACY_DROP_POINTS, objective="size")
    assert chosen.method == published and chosen.accepted
    assert [c.accepted for c in (fp32, int8)].count(True) == 1
    assert "points" in int8.reason


def test_an_unknown_objective_fails_before_training(failing_root):
    assert main(["--objective", "fastest"], root=failing_root) == 1
    assert (
        "objective must be one of cost, latency, size, got fastest" in (failing_root / "output" / "failure").read_text()
    )


def test_invalid_model_name_fails_before_training(failing_root):
    assert main(["--model-name", "Digits/../x"], root=failing_root) == 1
    assert "model name must match" in (failing_root / "output" / "failure").read_text()


def test_hyperparameters_are_decoded_as_sagemaker_encodes_them(tmp_path):
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    raw = {"epochs": '"10"', "learning-rate": "0.01", "model_name": '"digits"', "plain": "digits"}
    (config / "hyperparameters.json").write_text(json.dumps(raw))
    found = read_hyperparameters(tmp_path, {"SM_HP_SEED": "5"})
    assert found == {"epochs": 10, "learning_rate": 0.01, "model_name": "digits", "plain": "digits", "seed": 5}


def test_a_model_the_serving_functions_cannot_hold_fails_the_job_at_publish_naming_needs_and_limits(
    tmp_path, monkeypatch
):
    """maas train local / submit pass the template's smallest serving function as serving_memory_mb and
    serving_storage_mb; a model needing more is not published (the trained files stay in the model dir)."""
    clean_env(monkeypatch)
    monkeypatch.setenv("MAAS_MODEL_BUCKET", BUCKET)
    s3_client.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        hyperparameters = {"epochs": 1, "model_name": "too-big", "serving_memory_mb": 128, "serving_storage_mb": 512}
        root = fake_opt_ml(tmp_path / "opt_ml", hyperparameters)
        assert main([], root=root) != 0
        failure = (root / "output" / "failure").read_text()
        assert "model_too_large" in failure or "needs memory" in failure, failure
        assert "(this function has 128 MB)" in failure
        # Nothing written (the module's shared job may have published other models in this mock).
        assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="models/too-big/")
        assert (root / "model" / "model.onnx").exists()
        # The same memory prices the candidates (objective cost), as the function would bill them.
        compression = json.loads((root / "model" / "manifest.json").read_text())["compression"]
        assert compression["cost_model"]["memory_mb"] == 128
    s3_client.cache_clear()
