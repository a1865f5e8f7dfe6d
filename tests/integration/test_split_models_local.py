"""A large model through the local stack: `maas models publish` splits it (its weights in model.onnx.data
beside the graph), the API downloads both files side by side into its /tmp and answers as the inline
model does (ARCHITECTURE.md, "Registry layout", "Serving rules")."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import onnxruntime as ort
import pytest

from bench.loading import matmul_chain
from maas_core.shared.sizing import Needs
from tests_support import MAAS, http, running_stack
from training.weights import SPLIT_THRESHOLD_BYTES

pytestmark = pytest.mark.integration

SIDE = 512  # 1 MiB per initialiser


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    state = tmp_path_factory.mktemp("split")
    env = {"ApiFunction": {"OPTIMIZED_MODEL_DIR": str(state / "models")}}
    with running_stack(state, env) as s:
        yield s


def test_a_large_model_is_published_split_and_served_with_the_same_prediction(local):
    path = local["state"] / "chain.onnx"
    path.write_bytes(matmul_chain(SPLIT_THRESHOLD_BYTES, side=SIDE))  # just at the threshold: 1 MiB
    command = [*MAAS, "models", "publish", "--name", "large", "--onnx", str(path)]
    done = subprocess.run(command, env=local["env"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    published = json.loads(done.stdout)
    manifest = local["registry"].read_manifest("large", published["version"])
    artifact = manifest.artifact
    assert artifact.external_data is not None and artifact.size_bytes < 4096  # the graph alone
    # What publish says the model needs is the split model's: both files, at the split slope.
    assert published["serving"]["needs"] == Needs.of(artifact.size_bytes, artifact.external_data.size_bytes).to_json()

    x = np.random.default_rng(3).standard_normal((2, SIDE)).astype(np.float32)
    body = json.dumps({"instances": x.tolist()}).encode()
    status, answer = http("POST", f"{local['url']}/models/large/predict", body, {"Content-Type": "application/json"})
    assert status == 200, answer
    assert answer["version"] == published["version"]
    expected = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    got = np.array([p["y"] for p in answer["predictions"]], np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    entry = local["state"] / f"models-{os.getuid()}" / artifact.files_id
    assert sorted(p.name for p in entry.iterdir()) == ["model.onnx", "model.onnx.data"]
