"""The compression menu piece by piece: building each ONNX-level candidate, the checks that reject
one, the selection rule, and the Keras-side pruning and distillation.

The ONNX candidates are built from the conftest's real digits classifier (no TensorFlow needed);
the job module covers pruned and distilled end to end, and one job here has a broken candidate.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from maas_core.shared.manifest import TensorSpec, graph_tensors
from tests_support import digits_data
from training import compress
from training.compress import (
    FP16,
    FP32,
    INT8_DYNAMIC,
    INT8_STATIC,
    Built,
    Candidate,
    calibration_sample,
    choose,
    evaluate,
    parse_menu,
)

pytestmark = pytest.mark.training

SERVING_IO = (
    [TensorSpec("image", "float32", (None, 8, 8, 1))],
    [TensorSpec("probabilities", "float32", (None, 10))],
)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory, digits_onnx) -> SimpleFp32:
    folder = tmp_path_factory.mktemp("menu")
    (folder / "model.fp32.onnx").write_bytes(digits_onnx)
    x, y = digits_data()
    return SimpleFp32(folder, folder / "model.fp32.onnx", x[:1400], y[:1400], x[1400:], y[1400:])


class SimpleFp32:
    def __init__(self, folder: Path, path: Path, *data: np.ndarray) -> None:
        self.folder, self.path = folder, path
        self.train_x, self.train_y, self.x, self.y = (np.asarray(a) for a in data)
        self.x = self.x.reshape(-1, 8, 8, 1).astype(np.float32)
        self.train_x = self.train_x.reshape(-1, 8, 8, 1).astype(np.float32)
        self.probabilities = compress.predict(path, self.x)

    def evaluate(self, method: str, make: Any) -> Candidate:
        return evaluate(method, make, self.x, self.y, io=SERVING_IO, source="fp32")


@pytest.mark.parametrize("method", [INT8_DYNAMIC, INT8_STATIC, FP16])
def test_each_onnx_candidate_loads_keeps_the_serving_io_and_is_measured(fp32, method):
    calibration = calibration_sample(fp32.train_x, 60, seed=0)
    dst = compress.build(method, fp32.path, fp32.folder / compress.FILES[method], calibration=calibration)
    assert graph_tensors(dst) == graph_tensors(fp32.path) == SERVING_IO
    candidate = fp32.evaluate(method, lambda: Built(dst, reference=fp32.probabilities))
    assert candidate.usable and candidate.reason == "", candidate.reason
    assert candidate.size_bytes > 0 and candidate.gzip_bytes > 0  # sizes vs fp32: see test_job (a real CNN)
    assert candidate.latency_ms is not None and candidate.latency_ms > 0
    assert candidate.batch_latency_ms is not None and candidate.batch_latency_ms > candidate.latency_ms  # 32 rows
    assert candidate.accuracy is not None and candidate.accuracy > 0.85
    assert candidate.parity_max_abs_diff is not None and candidate.details["top1_agreement_with_source"] > 0.95
    model = onnx.load(str(dst))
    ops = {node.op_type for node in model.graph.node}
    if method == INT8_STATIC:
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    if method == FP16:
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
        assert candidate.parity_max_abs_diff <= compress.PARITY_TOLERANCE[FP16]
        assert candidate.size_bytes < fp32.path.stat().st_size


def test_calibration_sample_is_seeded_and_bounded():
    x = np.arange(1000, dtype=np.float32).reshape(-1, 1)
    first, again = calibration_sample(x, 200, seed=3), calibration_sample(x, 200, seed=3)
    assert len(first) == 200 and len(np.unique(first)) == 200 and np.array_equal(first, again)
    assert len(calibration_sample(x[:50], 200, seed=3)) == 50


def _write(model: onnx.ModelProto, path: Path) -> Built:
    onnx.save(model, str(path))
    return Built(path)


def test_a_file_onnxruntime_cannot_load_is_rejected_with_its_sizes(fp32):
    path = fp32.folder / "garbage.onnx"

    def make() -> Built:
        path.write_bytes(b"this is not a protobuf")
        return Built(path)

    candidate = fp32.evaluate(FP16, make)
    assert not candidate.usable and not candidate.accepted
    assert candidate.reason.startswith("rejected: onnxruntime cannot load it")
    assert candidate.size_bytes == len(b"this is not a protobuf") and candidate.gzip_bytes > 0


def test_a_candidate_that_cannot_be_built_is_rejected_with_the_error(fp32):
    def make() -> Built:
        raise RuntimeError("quantiser fell over")

    candidate = fp32.evaluate(INT8_STATIC, make)
    assert candidate.reason == "rejected: RuntimeError: quantiser fell over"
    assert candidate.file == "model.int8-static.onnx" and candidate.size_bytes == 0


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("rename_output", "graph inputs/outputs"),
        ("float64_input", "graph inputs/outputs"),
    ],
)
def test_a_candidate_with_other_io_is_rejected(fp32, change, expected):
    model = onnx.load(str(fp32.path))
    if change == "rename_output":
        model.graph.node[-1].output[0] = "scores"
        model.graph.output[0].name = "scores"
    else:
        model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
        cast = onnx.helper.make_node("Cast", ["image"], ["image_f32"], to=onnx.TensorProto.FLOAT)
        model.graph.node[0].input[0] = "image_f32"
        model.graph.node.insert(0, cast)
    candidate = fp32.evaluate(FP16, lambda: _write(model, fp32.folder / f"{change}.onnx"))
    assert not candidate.usable and expected in candidate.reason, candidate.reason


def test_a_candidate_that_fails_parity_is_rejected(fp32):
    off = fp32.probabilities + 0.05
    candidate = fp32.evaluate(FP16, lambda: Built(fp32.path, reference=off))
    assert not candidate.usable and "parity: max |output - fp32| = 0.05 > 0.01" in candidate.reason
    export_parity = fp32.evaluate(FP32, lambda: Built(fp32.path, parity=3e-3))
    assert not export_parity.usable and "> 0.0001" in export_parity.reason
    int8_is_gated_not_parity_checked = fp32.evaluate(INT8_DYNAMIC, lambda: Built(fp32.path, reference=off))
    assert int8_is_gated_not_parity_checked.usable


# -- selection: the size objective (cost and latency: tests/unit/test_compress_objective.py) -------------


def _c(method: str, size: int, accuracy: float | None) -> Candidate:
    return Candidate(method, f"model.{method}.onnx", size, accuracy, None if accuracy is None else 0.1)


def test_the_smallest_candidate_within_the_drop_wins():
    menu = [
        _c("fp32", 600_000, 0.980),
        _c("int8-dynamic", 160_000, 0.978),
        _c("int8-static", 170_000, 0.980),
        _c("fp16", 300_000, 0.981),
        _c("pruned", 150_000, 0.974),  # smaller, but 0.6 points down
        _c("distilled", 40_000, 0.960),
    ]
    chosen = choose(menu, 0.5, objective="size")
    assert chosen.method == "int8-dynamic" and [c.accepted for c in menu] == [False, True, False, False, False, False]
    reasons = {c.method: c.reason for c in menu}
    assert reasons["fp32"] == "superseded by int8-dynamic"
    assert "0.20 points <= 0.5" in reasons["int8-dynamic"] and "3.8x smaller" in reasons["int8-dynamic"]
    assert "not smaller than int8-dynamic" in reasons["int8-static"]
    assert reasons["pruned"] == "accuracy drop 0.60 points > 0.5 allowed"
    assert reasons["distilled"] == "accuracy drop 2.00 points > 0.5 allowed"
    assert choose(menu, 2.0, objective="size").method == "distilled"


def test_a_drop_of_exactly_the_allowance_passes():
    menu = [_c("fp32", 600_000, 0.98), _c("int8-dynamic", 160_000, 0.975)]
    # 0.98 - 0.975 is 0.005000000000000004 in floats
    assert choose(menu, 0.5, objective="size").method == "int8-dynamic"


def test_ties_on_size_go_to_accuracy_then_to_menu_order():
    menu = [_c("fp32", 600_000, 0.98), _c("int8-dynamic", 160_000, 0.978), _c("pruned", 160_000, 0.979)]
    assert choose(menu, 0.5, objective="size").method == "pruned"
    menu = [_c("fp32", 600_000, 0.98), _c("int8-dynamic", 160_000, 0.979), _c("pruned", 160_000, 0.979)]
    assert choose(menu, 0.5, objective="size").method == "int8-dynamic"


def test_none_within_the_drop_publishes_fp32():
    menu = [_c("fp32", 600_000, 0.98), _c("int8-dynamic", 160_000, 0.97), _c("fp16", 300_000, None)]
    menu[2].reason = "rejected: onnxruntime cannot load it: ..."
    chosen = choose(menu, 0.5, objective="size")
    assert chosen is menu[0] and chosen.accepted and not any(c.accepted for c in menu[1:])
    assert menu[0].reason == "baseline; no compressed candidate passed (int8-dynamic, fp16)"
    assert menu[1].reason == "accuracy drop 1.00 points > 0.5 allowed"
    assert menu[2].reason == "rejected: onnxruntime cannot load it: ...", "a rejection keeps its own reason"
    assert choose([_c("fp32", 600_000, 0.98)], 0.5, objective="size").reason == "baseline"


def test_an_unusable_candidate_never_wins_however_small():
    menu = [_c("fp32", 600_000, 0.98), _c("distilled", 10, None)]
    assert choose(menu, 100.0, objective="size").method == "fp32"


@pytest.mark.parametrize(
    ("text", "menu"),
    [
        ("all", ["fp32", "int8-dynamic", "int8-static", "fp16", "pruned", "distilled"]),
        ("fp16, int8-dynamic,fp16", ["fp32", "int8-dynamic", "fp16"]),
        ("FP32", ["fp32"]),
        (compress.DEFAULT_COMPRESSION, ["fp32", "int8-dynamic", "int8-static", "fp16"]),
    ],
)
def test_parse_menu(text, menu):
    assert parse_menu(text) == menu


@pytest.mark.parametrize("text", ["", "int4", "all,fp16", " , "])
def test_parse_menu_refuses_what_it_does_not_know(text):
    with pytest.raises(ValueError, match="comma list of fp32, int8-dynamic"):
        parse_menu(text)


# -- Keras side: pruning and distillation -----------------------------------------------------------


def test_magnitude_pruning_reaches_the_target_and_keeps_pruned_weights_at_zero():
    import keras

    from training.pruning import MagnitudePruning, magnitude_mask, prunable_kernels, sparsity

    weights = np.array([[0.1, -0.5], [0.05, 2.0], [-0.3, 0.0]], np.float32)
    assert np.array_equal(keras.ops.convert_to_numpy(magnitude_mask(weights, 0.5)), [[0, 1], [0, 1], [1, 0]])

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(256, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruning = MagnitudePruning(0.6, end_step=8, frequency=2)
    assert pruning.sparsity_at(0) == 0 and pruning.sparsity_at(8) == pytest.approx(0.6)
    assert 0 < pruning.sparsity_at(2) < pruning.sparsity_at(4) < 0.6
    model.fit(x, y, epochs=3, batch_size=32, callbacks=[pruning], verbose=0)  # 24 steps: 16 at the target
    assert sparsity(model) == pytest.approx(0.6, abs=0.01)
    for kernel, mask in zip(prunable_kernels(model), pruning.masks, strict=True):
        zeros = keras.ops.convert_to_numpy(mask) == 0
        assert not keras.ops.convert_to_numpy(kernel)[zeros].any(), "Adam must not revive a pruned weight"


def test_softened_probabilities_equal_a_softmax_of_scaled_logits():
    import keras

    from training.distill import distillation_loss, soften

    logits = np.array([[2.0, 1.0, -1.0], [0.0, 3.0, 0.5]], np.float32)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits / 4.0))
    assert np.allclose(keras.ops.convert_to_numpy(soften(probabilities, 4.0)), expected, atol=1e-6)
    # A student that matches the teacher exactly pays only the (weighted) hard-label cross-entropy.
    targets = np.concatenate([np.eye(3, dtype=np.float32)[[0, 1]], expected], axis=1)
    loss = keras.ops.convert_to_numpy(distillation_loss(3, 4.0, 0.3)(targets, probabilities))
    assert np.allclose(loss, 0.3 * -np.log(probabilities[[0, 1], [0, 1]]), atol=1e-5)


# -- one broken candidate inside a real job ----------------------------------------------------------


def test_a_broken_candidate_is_rejected_and_the_job_still_publishes(tmp_path, monkeypatch):
    import boto3
    from moto import mock_aws
    from test_job import BUCKET, clean_env, fake_opt_ml

    from maas_core.shared.aws import s3_client
    from training.job import main

    def broken_fp16(src: str | Path, dst: str | Path) -> Path:
        Path(dst).write_bytes(b"\x08\x07 not really onnx")
        return Path(dst)

    clean_env(monkeypatch)
    monkeypatch.setenv("MAAS_MODEL_BUCKET", BUCKET)
    monkeypatch.setattr(compress, "convert_fp16", broken_fp16)
    root = fake_opt_ml(tmp_path / "opt_ml", {"epochs": 2, "compression": "fp16,int8-dynamic", "model_name": "broken"})
    s3_client.cache_clear()
    stdout = io.StringIO()
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        with contextlib.redirect_stdout(stdout):
            code = main([], root=root)
        assert code == 0, (root / "output" / "failure").read_text()
        published = json.loads((root / "output" / "data" / "published.json").read_text())
    s3_client.cache_clear()
    candidates = {c["method"]: c for c in published["compression"]["candidates"]}
    assert list(candidates) == ["fp32", "int8-dynamic", "fp16"]
    fp16 = candidates["fp16"]
    assert not fp16["accepted"] and fp16["reason"].startswith("rejected: onnxruntime cannot load it")
    assert fp16["accuracy"] is None and fp16["size_bytes"] > 0
    assert published["compression"]["method"] in ("int8-dynamic", "fp32")
    assert re.search(r"^candidate fp16: [0-9,]+ bytes, not measured: rejected, onnxruntime", stdout.getvalue(), re.M)
