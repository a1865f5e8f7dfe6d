"""The stock KServe v2 clients against `maas local start-api`, with their defaults: tritonclient.http
(binary tensor data both ways) and the kserve SDK (binary inputs). They run in .venv-clients (their
own dependency trees), through tests/integration/stock_clients.py; answers are compared with
onnxruntime on the same inputs (for the text model, after the project's own tokenisation)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests_support import ROOT, build_digits_onnx, build_two_input_onnx, digits_data, reviews_expected

pytestmark = pytest.mark.integration

CLIENTS = ROOT / ".venv-clients" / "bin" / "python"
SCRIPT = Path(__file__).with_name("stock_clients.py")


def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "image": digits_data()[0][:3],
        "features": rng.normal(size=(2, 3)).astype("float32"),
        "extra": rng.normal(size=(2, 2)).astype("float32"),
        # Words the tokenizer knows, one it does not, an empty string and non-ASCII text (UTF-8 on the wire).
        "text": np.array(["great product, love it", "awful. terrible quality", "ok", "", "zèbre ünïcode"]),
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


@pytest.fixture(scope="module")
def triton(stack, reviews, tmp_path_factory) -> dict[str, Any]:
    """What tritonclient got, one run for the module's tests (a client process costs seconds)."""
    return run_client("triton", stack, tmp_path_factory.mktemp("triton"))


def test_tritonclient_with_its_defaults_gets_the_right_answers(triton):
    got = triton
    assert got["live"] and got["ready"]
    assert "binary_tensor_data" in got["server"]["extensions"]
    x = inputs()
    digits = got["digits"]
    assert digits["metadata"]["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    want = expected(build_digits_onnx(), {"image": x["image"]})
    assert_model_answers(digits, want)
    assert np.argmax(digits["named"], axis=1).tolist() == [0, 1, 2]
    blend = expected(build_two_input_onnx(), {"features": x["features"], "extra": x["extra"]})
    assert np.allclose(got["blend"], blend, atol=1e-5)


def test_tritonclient_with_its_defaults_on_a_text_model(triton):
    """A BYTES input sent as Triton sends it (binary: each string a 4-byte little-endian length and its
    UTF-8 bytes), tokenised by the manifest's tokenizer: the answers onnxruntime gives here on the same
    strings, labels in class_count."""
    got = triton["reviews"]
    assert got["metadata"]["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert got["metadata"]["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
    want = reviews_expected(inputs()["text"].tolist())
    assert_model_answers(got, want)
    assert np.argmax(got["named"], axis=1).tolist()[:2] == [2, 0]  # positive, negative: a model that learnt
    labels = [[entry.split(":")[2] for entry in row] for row in got["class_count"]]
    assert labels[0][0] == "positive" and labels[1][0] == "negative"


def assert_model_answers(got: dict[str, Any], want: np.ndarray) -> None:
    """One model's calls in stock_clients._triton_model against onnxruntime's answer."""
    assert got["model_ready"]
    # The outputs came as bytes (binary_data_size), not JSON: the client's default, honoured.
    assert got["named_binary"]["binary_data_size"] == want.size * 4
    for key in ("named", "unnamed", "async"):
        assert np.allclose(got[key], want, atol=1e-6), key
    assert got["async_id"] == "async-1"
    # class_count=3: the three best classes, best first, as "score:index:label".
    best = [[int(entry.split(":")[1]) for entry in row] for row in got["class_count"]]
    assert best == np.argsort(-want, axis=1)[:, :3].tolist()


def test_the_kserve_sdk_with_its_defaults_gets_the_right_answers(stack, tmp_path):
    got = run_client("kserve", stack, tmp_path)
    assert got["live"] and got["ready"] and got["model_ready"]
    want = expected(build_digits_onnx(), {"image": inputs()["image"]})
    assert np.allclose(got["outputs"], want, atol=1e-6)


def test_the_kserve_sdk_given_the_deployed_stage_url_as_its_base_gets_the_same_answers(stack, tmp_path):
    """Deployed, every client's base URL is the stage URL (the ApiUrl output, .../<stage>); the client
    calls <base>/v2/..., which the local API serves as API Gateway does."""
    from maas.stack import load_template

    stage = load_template(ROOT / "template.yaml").api_stage()
    got = run_client("kserve", {**stack, "url": f"{stack['url']}/{stage}"}, tmp_path)
    assert got["live"] and got["ready"] and got["model_ready"]
    assert np.allclose(got["outputs"], expected(build_digits_onnx(), {"image": inputs()["image"]}), atol=1e-6)
