"""`sam build` without a container, and the package it makes working under the Lambda runtime's Python."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def python312() -> str | None:
    pyenv_root = (
        subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        if shutil.which("pyenv")
        else ""
    )
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/3.12*/bin/python3.12")) if pyenv_root else []
    found = candidates[-1] if candidates else shutil.which("python3.12")
    if found and subprocess.run([found, "-V"], capture_output=True).returncode == 0:
        return found
    return None


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[Path, str]:
    py312 = python312()
    if py312 is None:
        pytest.skip("sam build for the python3.12 runtime needs a python3.12 (pyenv install 3.12)")
    out = tmp_path_factory.mktemp("sam")
    env = {**os.environ, "PATH": f"{Path(py312).parent}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env["SAM_CLI_TELEMETRY"] = "0"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "sam"),
            "build",
            "--template",
            str(ROOT / "template.yaml"),
            "--build-dir",
            str(out / "build"),
            "--cache-dir",
            str(out / "cache"),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    # template.yaml nests ApiFunction in its Serving application: sam build puts it under that folder.
    return out / "build" / "Serving" / "ApiFunction", py312


def test_the_package_is_src_and_its_requirements_only(build):
    package, _ = build
    top = {p.name for p in package.iterdir()}
    assert {"maas_core", "onnxruntime", "numpy", "aws_lambda_powertools"} <= top
    # Our code is one namespaced package (src/__init__.py): no top-level shared/ or functions/.
    unwanted = {"shared", "functions", "training", "maas", "tests", "tensorflow", "keras", "tf2onnx", "moto", "samcli"}
    assert not top & unwanted
    assert {p.name for p in (package / "maas_core").iterdir()} == {"__init__.py", "__pycache__", "shared", "functions"}
    size_mb = sum(f.stat().st_size for f in package.rglob("*") if f.is_file()) / 1e6
    assert size_mb < 250, f"{size_mb:.0f} MB is over Lambda's 250 MB unzipped limit"
    # src/Makefile's pruning: what serving never touches is gone...
    for dropped in ("onnxruntime/tools", "onnxruntime/quantization", "onnxruntime/transformers", "google", "bin"):
        assert not (package / dropped).exists(), dropped
    assert not list((package / "onnxruntime" / "capi").glob("libonnxruntime.so*"))
    assert {p.name for p in (package / "botocore" / "data").iterdir() if p.is_dir()} == {"s3", "sqs", "sts", "xray"}
    # ...and every module is compiled for the runtime's Python: dependencies sourceless, our code beside its source.
    assert (package / "numpy" / "__init__.pyc").exists() and not (package / "numpy" / "__init__.py").exists()
    assert (package / "maas_core" / "functions" / "api" / "app.py").exists()
    assert list((package / "maas_core" / "functions" / "api" / "__pycache__").glob("app.cpython-312.pyc"))


def test_the_package_serves_under_python312(build, tmp_path):
    """Import the handler from the built package alone and run a session on a real ONNX model."""
    package, py312 = build
    from tests_support import HANDLER_ENV, build_digits_onnx

    model = tmp_path / "model.onnx"
    model.write_bytes(build_digits_onnx())
    script = f"""
import json, types, numpy as np
from maas_core.functions.api import app
context = types.SimpleNamespace(function_name="ApiFunction", memory_limit_in_mb=1024, aws_request_id="build-test",
                                invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:ApiFunction")
from maas_core.shared.model_cache import build_session
response = app.lambda_handler(json.load(open({str(ROOT / "events" / "health.json")!r})), context)
session = build_session(open({str(model)!r}, 'rb').read(), threads=1)
probs = session.run(None, {{"image": np.zeros((1, 8, 8, 1), np.float32)}})[0]
print(json.dumps({{"status": response["statusCode"], "shape": list(probs.shape)}}))
"""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(package),  # like /var/task: nothing from the dev venv
        "PYTHONNOUSERSITE": "1",
        **HANDLER_ENV,
    }
    result = subprocess.run(
        [py312, "-I", "-c", f"import sys; sys.path.insert(0, {str(package)!r})\n{script}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"status": 200, "shape": [1, 10]}
