"""The models the benchmark serves: trained by the real training job once, cached, then published.

The digits CNN is trained as ``maas train local`` trains it (the SageMaker-contract job, every
compression candidate built and measured), and a tabular model (breast cancer) gives the load test
a second model. Each job's output is cached under ``.maas/bench/models/<family>-<key>``; the key
covers the training code, the hyperparameters and the framework versions, so a change to any of
them trains again. The TensorFlow baseline gets the same Keras model as a SavedModel archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.common import ROOT, WORK, say
from maas_core.shared.manifest import Draft

DIGITS_HP: dict[str, Any] = {"family": "image", "model_name": "digits", "epochs": 15, "compression": "all"}
TABULAR_HP: dict[str, Any] = {"family": "tabular", "model_name": "breast-cancer", "epochs": 15}
FRAMEWORKS = ("tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "scikit-learn", "numpy")
TF_ARCHIVE_KEY = "bench/tensorflow/digits/model.tar.gz"
# Registry names: the candidate the job published (its objective's choice: int8-static for the digits CNN under
# cost) and the fp32 export of the same trained CNN.
INT8, FP32, TABULAR = "digits", "digits-fp32", "breast-cancer"


@dataclass
class Job:
    model_dir: Path
    manifest: Draft  # the job's manifest.json: what the registry is handed
    trained_s: float | None  # None: reused from the cache


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def cache_key(hyperparameters: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(hyperparameters, sort_keys=True).encode())
    for path in sorted((ROOT / "training").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    for dist in FRAMEWORKS:
        digest.update(f"{dist}={_version(dist)}".encode())
    return digest.hexdigest()[:16]


def train(hyperparameters: dict[str, Any], retrain: bool = False) -> Job:
    """The job's model dir, from the cache or from a fresh run of ``python -m training.job``."""
    from maas.train_local import layout

    folder = WORK / "models" / f"{hyperparameters['family']}-{cache_key(hyperparameters)}"
    model_dir = folder / "opt_ml" / "model"
    if (model_dir / "manifest.json").exists() and not retrain:
        say(f"   {hyperparameters['model_name']}: reusing the job output in {model_dir.relative_to(ROOT)}")
        return Job(model_dir, _draft(model_dir), None)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = {**layout(folder / "opt_ml", None, hyperparameters), "MAAS_MODEL_BUCKET": ""}
    log = folder / "train.log"
    say(f"   {hyperparameters['model_name']}: training ({hyperparameters}); log in {log.relative_to(ROOT)}")
    started = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.call(
            [sys.executable, "-m", "training.job"],
            env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"},
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    if code != 0:
        raise RuntimeError(f"the training job failed (exit {code}); see {log}")
    return Job(model_dir, _draft(model_dir), time.perf_counter() - started)


def _draft(model_dir: Path) -> Draft:
    return Draft.from_json(json.loads((model_dir / "manifest.json").read_text()))


def savedmodel_archive(job: Job) -> Path:
    """model.keras as a TensorFlow SavedModel (Keras' own export), tarred with its labels."""
    archive = job.model_dir.parent.parent / "tensorflow" / "model.tar.gz"
    if archive.exists():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        script = (
            "import sys, keras; keras.models.load_model(sys.argv[1]).export(sys.argv[2], "
            "format='tf_saved_model', verbose=False)"
        )
        subprocess.run(
            [sys.executable, "-c", script, str(job.model_dir / "model.keras"), f"{tmp}/saved_model"],
            check=True,
            capture_output=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"},
        )
        Path(tmp, "labels.json").write_text(json.dumps(list(job.manifest.labels or ())))
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(f"{tmp}/saved_model", arcname="saved_model")
            tar.add(f"{tmp}/labels.json", arcname="labels.json")
        partial.replace(archive)
    return archive


def candidate_file(job: Job, method: str) -> Path:
    entry = next(c for c in job.manifest.compression["candidates"] if c["method"] == method)
    return job.model_dir / str(entry["file"])


def publish(s3: Any, bucket: str, digits: Job, tabular: Job, archive: Path) -> dict[str, str]:
    """Publish the served and the fp32 digits, the tabular model and the SavedModel archive; returns name ->
    version. The served one is the job's own model.onnx and manifest, as `maas train` publishes them."""
    from maas_core.shared.registry import Registry

    registry = Registry(bucket, s3)
    versions = {}
    for name, job, method in ((INT8, digits, None), (FP32, digits, "fp32"), (TABULAR, tabular, None)):
        data = (candidate_file(job, method) if method else job.model_dir / "model.onnx").read_bytes()
        manifest = job.manifest
        if method:  # the same trained model, published as this candidate
            compression = {**manifest.compression, "method": method, "compressed_size_bytes": len(data)}
            manifest = replace(manifest, compression=compression)
        versions[name] = registry.publish(name, data, manifest).version
    s3.upload_file(str(archive), bucket, TF_ARCHIVE_KEY)
    return versions
