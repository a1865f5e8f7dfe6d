"""The packed job, run as SageMaker runs it in the image ``maas train submit`` names.

``sourcedir.tar.gz`` is unpacked into ``/opt/ml/code`` (a fake ``/opt/ml`` under ``tmp_path``); its
``requirements.txt`` is pip-installed over the image's Python, TensorFlow and Keras (a venv of
``IMAGE_PYTHON`` with ``tensorflow-cpu==IMAGE_TENSORFLOW`` and ``keras==IMAGE_KERAS``, as the image
has them); then ``python entry.py --<hyperparameter> <value> ...`` runs from ``/opt/ml/code`` with
the toolkit's environment (sagemaker-training-toolkit ``ENVIRONMENT_VARIABLES.md``), in a process
that sees nothing of this checkout's own environment.

The venv is cached under ``.maas/venvs/`` (git-ignored), keyed by the Python, the image's packages
and requirements.txt: the first run downloads TensorFlow (about 270 MB) from PyPI, later runs reuse it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.data import write_tabular_channel
from training.job import ARTIFACTS
from training.sagemaker_env import FAILURE_REASON_CHARS
from training.submit import (
    IMAGE_KERAS,
    IMAGE_PYTHON,
    IMAGE_TENSORFLOW,
    REQUIREMENTS,
    encode_hyperparameters,
    package_source,
)

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / ".maas" / "venvs"
# A tiny channel and a short run: the point is that the job starts, trains, exports and measures.
HYPERPARAMETERS = {"family": "logistic", "epochs": 3, "batch_size": 16, "seed": 7, "model_name": "wine-sm"}
JOB_NAME = "wine-sm-container-test"


def image_python(version: str = IMAGE_PYTHON) -> Path | None:
    """The newest pyenv interpreter of that minor version, else ``pythonX.Y`` on PATH."""
    found: list[Path] = []
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    for candidate in sorted(Path(pyenv_root, "versions").glob(f"{version}.*/bin/python{version}")):
        found.append(candidate)
    if found:
        return found[-1]
    on_path = shutil.which(f"python{version}")
    return Path(on_path) if on_path else None


def unpack_source(code_dir: Path) -> Path:
    """What SageMaker does with sagemaker_submit_directory: the tarball, unpacked into /opt/ml/code."""
    code_dir.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(package_source()), mode="r:gz") as tar:
        tar.extractall(code_dir, filter="data")
    return code_dir


def clean_process_env(venv: Path | None = None) -> dict[str, str]:
    """Only what a container would have: no PYTHONPATH, venv, AWS settings or bucket of this checkout."""
    path = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin" if venv else "/usr/local/bin:/usr/bin:/bin"
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
    # pip's own settings (index, cache, certificates) stay: they say where packages come from.
    env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    return env


def pip(python: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(python), "-m", "pip", *args],
        cwd=cwd,
        env=clean_process_env(python.parent.parent),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def image_venv(interpreter: Path) -> Path:
    """A venv of the image's Python with the image's TensorFlow and Keras and requirements.txt over them.

    Built once per key into a temporary folder and renamed into place, so a build that was
    interrupted is never taken for a finished one.
    """
    version = subprocess.run(
        [str(interpreter), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    key = hashlib.sha256(
        "\n".join([version, IMAGE_TENSORFLOW, IMAGE_KERAS, REQUIREMENTS.read_text()]).encode()
    ).hexdigest()[:16]
    venv = VENVS / f"sagemaker-py{version}-{key}"
    if (venv / "bin" / "python").exists():
        return venv
    VENVS.mkdir(parents=True, exist_ok=True)
    building = VENVS / f".building-{key}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([str(interpreter), "-m", "venv", str(building)], check=True)
    python = building / "bin" / "python"
    # The image: its TensorFlow (the CPU wheel of the same release here) and the Keras it ships.
    pip(python, "install", "--quiet", f"tensorflow-cpu=={IMAGE_TENSORFLOW}", f"keras=={IMAGE_KERAS}")
    # What the toolkit does before every job, once here so the cached venv is the prepared image.
    pip(python, "install", "--quiet", "-r", str(REQUIREMENTS))
    try:
        building.rename(venv)
    except OSError:  # another run finished the same venv first
        shutil.rmtree(building, ignore_errors=True)
    # About 2 GB each: keep only the one the current image and requirements.txt need.
    for old in VENVS.glob("sagemaker-*"):
        if old != venv:
            shutil.rmtree(old, ignore_errors=True)
    return venv


def sagemaker_env(opt_ml: Path, hyperparameters: dict[str, str], channels: list[str]) -> dict[str, str]:
    """The variables the toolkit sets for ``python entry.py`` (ENVIRONMENT_VARIABLES.md), on a fake /opt/ml."""
    hps = {k: json.loads(v) for k, v in hyperparameters.items()}
    user_hps = {k: v for k, v in hps.items() if not k.startswith("sagemaker_")}
    args = [part for k, v in user_hps.items() for part in (f"--{k}", str(v))]
    env = {
        # The project's override of /opt/ml (training.sagemaker_env): the tree lives under tmp_path.
        "SM_ROOT": str(opt_ml),
        "SM_MODEL_DIR": str(opt_ml / "model"),
        "SM_INPUT_DIR": str(opt_ml / "input"),
        "SM_INPUT_CONFIG_DIR": str(opt_ml / "input" / "config"),
        "SM_OUTPUT_DIR": str(opt_ml / "output"),
        "SM_OUTPUT_DATA_DIR": str(opt_ml / "output" / "data"),
        "SM_OUTPUT_INTERMEDIATE_DIR": str(opt_ml / "output" / "intermediate"),
        "SM_CHANNELS": json.dumps(channels),
        **{f"SM_CHANNEL_{c.upper()}": str(opt_ml / "input" / "data" / c) for c in channels},
        "SM_HPS": json.dumps(user_hps),
        **{f"SM_HP_{k.upper()}": str(v) for k, v in user_hps.items()},
        "SM_USER_ARGS": json.dumps(args),
        "SM_USER_ENTRY_POINT": "entry.py",
        "SM_MODULE_NAME": "entry",
        "SM_MODULE_DIR": str(hps.get("sagemaker_submit_directory", "")),
        "SM_FRAMEWORK_MODULE": "sagemaker_tensorflow_container.training:main",
        "SM_CURRENT_HOST": "algo-1",
        "SM_HOSTS": json.dumps(["algo-1"]),
        "SM_NUM_GPUS": "0",
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_LOG_LEVEL": "20",
        "SM_NETWORK_INTERFACE_NAME": "eth0",
        "SM_CURRENT_INSTANCE_TYPE": "ml.g5.xlarge",
        "SM_RESOURCE_CONFIG": json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}),
        "SM_INPUT_DATA_CONFIG": json.dumps({c: {"TrainingInputMode": "File"} for c in channels}),
        "TRAINING_JOB_NAME": JOB_NAME,
        # build_request's Environment: the Keras backend the export needs.
        "KERAS_BACKEND": "tensorflow",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    env["SM_TRAINING_ENV"] = json.dumps(
        {
            "job_name": JOB_NAME,
            "hyperparameters": user_hps,
            "channel_input_dirs": {c: env[f"SM_CHANNEL_{c.upper()}"] for c in channels},
            "model_dir": env["SM_MODEL_DIR"],
            "output_data_dir": env["SM_OUTPUT_DATA_DIR"],
            "current_host": "algo-1",
            "hosts": ["algo-1"],
            "num_gpus": 0,
            "user_entry_point": "entry.py",
        }
    )
    return env


def fake_opt_ml(tmp_path: Path, hyperparameters: dict[str, Any]) -> tuple[Path, dict[str, str], list[str]]:
    """/opt/ml with the code unpacked, hyperparameters.json as SageMaker writes it, and a train channel."""
    opt_ml = tmp_path / "opt" / "ml"
    unpack_source(opt_ml / "code")
    # As submit sends them: JSON-encoded strings, with the script-mode entries beside the job's own.
    encoded = encode_hyperparameters(
        {
            **hyperparameters,
            "sagemaker_program": "entry.py",
            "sagemaker_submit_directory": "s3://bucket/training-jobs/x/source/sourcedir.tar.gz",
            "sagemaker_region": "eu-west-1",
            "sagemaker_container_log_level": 20,
        }
    )
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(encoded))
    write_tabular_channel(opt_ml / "input" / "data" / "train", "wine", seed=1)
    args = [part for k, v in hyperparameters.items() for part in (f"--{k}", str(v))]
    return opt_ml, encoded, args


def run_entry(python: Path, opt_ml: Path, encoded: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    venv = python.parent.parent if (python.parent.parent / "pyvenv.cfg").exists() else None
    return subprocess.run(
        [str(python), "entry.py", *args],
        cwd=opt_ml / "code",
        env={**clean_process_env(venv), **sagemaker_env(opt_ml, encoded, ["train"])},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.training
def test_the_packed_job_trains_exports_and_fills_the_model_dir_in_the_image(tmp_path: Path) -> None:
    interpreter = image_python()
    if interpreter is None:
        pytest.skip(f"needs Python {IMAGE_PYTHON}, the image's (pyenv install {IMAGE_PYTHON})")
    python = image_venv(interpreter) / "bin" / "python"
    opt_ml, encoded, args = fake_opt_ml(tmp_path, HYPERPARAMETERS)

    # The toolkit installs the source dir's requirements.txt before every job.
    pip(python, "install", "-r", "requirements.txt", cwd=opt_ml / "code")
    # Nothing it installed conflicts with the image's TensorFlow (protobuf, numpy, h5py ranges).
    pip(python, "check")
    done = run_entry(python, opt_ml, encoded, args)

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert not (opt_ml / "output" / "failure").exists()
    lines = done.stdout.splitlines()
    assert any(line.startswith("epoch=3 of=3 ") for line in lines), output[-3000:]
    assert any(line.startswith("export: model.fp32.onnx") for line in lines), output[-3000:]
    model_dir = opt_ml / "model"
    assert set(ARTIFACTS) <= {p.name for p in model_dir.iterdir()}
    manifest = json.loads((model_dir / "manifest.json").read_text())
    # The image's TensorFlow with the Keras requirements.txt pins, not whatever the venv had first.
    pins = dict(line.split("==") for line in REQUIREMENTS.read_text().splitlines() if "==" in line)
    assert manifest["framework"]["tensorflow"] == IMAGE_TENSORFLOW
    assert manifest["framework"]["keras"] == pins["keras"]
    assert manifest["framework"]["onnxruntime"] == pins["onnxruntime"]
    assert manifest["framework"]["tf2onnx"] == pins["tf2onnx"]
    # Parity: ONNX Runtime computed what Keras computed on the held-out rows.
    assert manifest["metrics"]["parity_max_abs_diff"] < 1e-4
    assert manifest["metrics"]["accuracy"] > 0.5
    assert manifest["training_job"]["id"] == JOB_NAME
    assert manifest["training_job"]["hyperparameters"]["epochs"] == 3
    # The model the job chose runs here too, on raw wine rows: 3 class probabilities per row.
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    rows = np.loadtxt(opt_ml / "input" / "data" / "train" / "wine.csv", delimiter=",", skiprows=1, usecols=range(13))
    (probabilities,) = session.run(None, {session.get_inputs()[0].name: rows[:4].astype(np.float32)})
    assert probabilities.shape == (4, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-3)


def test_a_job_that_cannot_import_writes_the_failure_file(tmp_path: Path) -> None:
    """A module the job imports is broken in the packed source: SageMaker must still get a reason."""
    opt_ml, encoded, args = fake_opt_ml(tmp_path, {"epochs": 1})
    job = opt_ml / "code" / "training" / "job.py"  # the module entry.py imports, whatever it imports in turn
    # At the end, after the module's own imports: the job fails at import time, as with UTC on 3.10.
    job.write_text(job.read_text() + "\nfrom datetime import NOT_IN_THIS_PYTHON\n")

    done = run_entry(Path(sys.executable), opt_ml, encoded, args)

    assert done.returncode != 0
    failure = opt_ml / "output" / "failure"
    assert failure.exists(), done.stderr[-3000:]
    reason = failure.read_text()
    assert reason.startswith("ImportError: cannot import name 'NOT_IN_THIS_PYTHON' from 'datetime'"), reason
    assert len(reason.rstrip("\n")) <= FAILURE_REASON_CHARS
    assert "while importing the job" in reason
    # The full traceback goes to the log (CloudWatch), naming the file that failed.
    assert str(job) in done.stderr
    assert not (opt_ml / "model").exists()


def test_the_packed_job_under_python_3_10_fails_with_a_reason(tmp_path: Path) -> None:
    """The image this job used to name ran Python 3.10, whose datetime has no UTC: the reason says so."""
    interpreter = image_python("3.10")
    if interpreter is None:
        pytest.skip("needs a Python 3.10 to show the failure of an image whose Python is too old")
    opt_ml, encoded, args = fake_opt_ml(tmp_path, {"epochs": 1})

    done = run_entry(interpreter, opt_ml, encoded, args)

    assert done.returncode != 0
    reason = (opt_ml / "output" / "failure").read_text()
    assert reason.startswith(("ImportError: ", "ModuleNotFoundError: ")), reason
    assert "Python 3.10." in reason
