"""The stock KServe v2 clients against `maas local start-api`, with their defaults: tritonclient.http
(binary tensor data both ways) and the kserve SDK (binary inputs). They run in .venv-clients (their
own dependency trees), through tests/integration/stock_clients.py; answers are compared with
onnxruntime on the same inputs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests_support import ROOT, build_digits_onnx, build_two_input_onnx, digits_data

pytestmark = pytest.mark.integration

CLIENTS = ROOT / ".venv-clients" / "bin" / "python"
SCRIPT = Path(__file__).with_name("stock_clients.py")


def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "image": digits_data()[0][:3],
        "features": rng.normal(size=(2, 3)).astype("float32"),
        "extra": rng.normal(size=(2, 2)).astype("float32"),
    }


def expected(model: bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def run_client(which: str, stack: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    if not CLIENTS.exists():
        pytest.skip("the stock clients are not installed (make .venv-clients/.installed)")
    data = tmp_path / "inputs.npz"
    np.savez(data, **inputs())
    result = subprocess.run(
        [str(CLIENTS), str(SCRIPT), which, stack["url"], str(data)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def test_tritonclient_with_its_defaults_gets_the_right_answers(stack, tmp_path):
    got = run_client("triton", stack, tmp_path)
    assert got["live"] and got["ready"] and got["model_ready"]
    assert got["metadata"]["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    assert "binary_tensor_data" in got["server"]["extensions"]
    x = inputs()
    want = expected(build_digits_onnx(), {"image": x["image"]})
    # The outputs came as bytes (binary_data_size), not JSON: the client's default, honoured.
    assert got["named_binary"]["binary_data_size"] == want.size * 4
    for key in ("named", "unnamed", "async"):
        assert np.allclose(got[key], want, atol=1e-6), key
    assert np.argmax(got["named"], axis=1).tolist() == [0, 1, 2]
    assert got["async_id"] == "async-1"
    # class_count=3: the three best classes, best first, as "score:index:label".
    best = [[int(entry.split(":")[1]) for entry in row] for row in got["class_count"]]
    assert best == np.argsort(-want, axis=1)[:, :3].tolist()
    blend = expected(build_two_input_onnx(), {"features": x["features"], "extra": x["extra"]})
    assert np.allclose(got["blend"], blend, atol=1e-5)


def test_the_kserve_sdk_with_its_defaults_gets_the_right_answers(stack, tmp_path):
    got = run_client("kserve", stack, tmp_path)
    assert got["live"] and got["ready"] and got["model_ready"]
    want = expected(build_digits_onnx(), {"image": inputs()["image"]})
    assert np.allclose(got["outputs"], want, atol=1e-6)
