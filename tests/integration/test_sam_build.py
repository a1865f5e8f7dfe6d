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
    assert not [p.name for p in (package / "simdjson").iterdir() if p.suffix in (".cpp", ".h", ".pyx", ".pxd")]
    if shutil.which("strip"):  # pysimdjson's library without its debug information
        assert sum(p.stat().st_size for p in package.glob("csimdjson*.so")) < 2_000_000
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


# What botocore makes of its data, as JSON: each kept service's operations and shapes (all but their
# documentation) and each client's endpoint in a region of every partition.
BOTOCORE_FINGERPRINT = """
import json, urllib.parse, botocore, botocore.session
session = botocore.session.get_session()
loader = session.get_component("data_loader")
out = {"version": botocore.__version__}
for service in ("s3", "sqs", "sts", "xray"):
    model = session.get_service_model(service)
    operations = {}
    for name in model.operation_names:
        op = model.operation_model(name)
        operations[name] = [op.http, [s.name for s in (op.input_shape, op.output_shape) if s is not None],
                            [e.name for e in op.error_shapes], op.context_parameters and len(op.context_parameters)]
    shapes = {}
    for name in model.shape_names:
        shape = model.shape_for(name)
        shapes[name] = [shape.type_name, sorted(shape.serialization.items()), sorted(shape.metadata.items(), key=str),
                        sorted(getattr(shape, "members", {}))]
    endpoints = {}
    for region in ("us-east-1", "eu-central-1", "ap-southeast-5", "cn-north-1", "us-gov-west-1", "us-iso-east-1"):
        client = session.create_client(service, region_name=region, aws_access_key_id="k", aws_secret_access_key="s")
        endpoints[region] = client.meta.endpoint_url
        if service == "s3":
            url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
            endpoints[region + " presigned"] = urllib.parse.urlsplit(url)[:3]
    docs = sum(1 for op in operations if model.operation_model(op).documentation)
    out[service] = {"operations": operations, "shapes": shapes, "endpoints": endpoints,
                    "client_context": sorted(p.name for p in model.client_context_parameters), "documented": docs}
print(json.dumps(out, sort_keys=True))
"""


def test_the_packages_trimmed_botocore_data_gives_the_same_operations_shapes_and_endpoints(build):
    """src/Makefile strips the docs out of the kept services' models and the other services out of
    endpoints.json: botocore must still see every operation, shape and endpoint the full data gives."""
    package, py312 = build
    env = {"PATH": os.environ["PATH"], "PYTHONNOUSERSITE": "1"}
    code = f"import sys; sys.path.insert(0, {str(package)!r})\n{BOTOCORE_FINGERPRINT}"
    trimmed = subprocess.run([py312, "-I", "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert trimmed.returncode == 0, trimmed.stderr[-2000:]
    # The dev venv's botocore, the same version as src/requirements.txt's (constraints.txt), with its full data.
    full = subprocess.run([sys.executable, "-c", BOTOCORE_FINGERPRINT], capture_output=True, text=True, timeout=120)
    assert full.returncode == 0, full.stderr[-2000:]
    ours, theirs = json.loads(trimmed.stdout), json.loads(full.stdout)
    assert ours["version"] == theirs["version"]
    for service in ("s3", "sqs", "sts", "xray"):
        assert theirs[service]["documented"] > 0 and ours[service]["documented"] == 0, service
        for part in ("operations", "shapes", "endpoints", "client_context"):
            assert ours[service][part] == theirs[service][part], (service, part)
    assert not list((package / "botocore" / "data").glob("*/*/examples-1.json"))


def test_the_dependencies_are_compiled_without_docstrings_and_our_code_with_them(build):
    package, py312 = build
    script = """
import json, botocore.session, maas_core.shared.model_cache as model_cache
print(json.dumps([botocore.session.Session.__doc__, bool(model_cache.build_session.__doc__)]))
"""
    env = {"PATH": os.environ["PATH"], "PYTHONNOUSERSITE": "1"}
    code = f"import sys; sys.path.insert(0, {str(package)!r})\n{script}"
    result = subprocess.run([py312, "-I", "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == [None, True]
