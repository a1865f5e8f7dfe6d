"""Compression candidates, their measured accuracy, size and latency, and the gate between them.

Dynamic int8 quantisation (weights int8, activations quantised at run time) is tried against the
fp32 export; it is published only if its held-out accuracy is within ``max_accuracy_drop_points``
percentage points of fp32. Accuracy is a fraction (0..1) everywhere; only the gate is in points.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.models import INPUT_NAME, OUTPUT_NAME

FP32 = "fp32"
INT8_DYNAMIC = "int8-dynamic"
DEFAULT_MAX_ACCURACY_DROP_POINTS = 0.5
LATENCY_RUNS = 50
LATENCY_WARMUP = 5
LATENCY_THREADS = 1  # a Lambda function has one or two vCPUs; measure what it will see


@dataclass
class Candidate:
    method: str
    file: str
    size_bytes: int
    accuracy: float
    latency_ms: float
    accepted: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Compression:
    chosen: Candidate
    candidates: list[Candidate]
    max_accuracy_drop_points: float
    eval_rows: int

    @property
    def fp32(self) -> Candidate:
        return next(c for c in self.candidates if c.method == FP32)

    def to_manifest(self) -> dict[str, Any]:
        compressed = [c for c in self.candidates if c.method != FP32]
        return {
            "method": self.chosen.method,
            "candidates": [c.to_dict() for c in self.candidates],
            "fp32_size_bytes": self.fp32.size_bytes,
            "compressed_size_bytes": compressed[0].size_bytes if compressed else self.fp32.size_bytes,
            "max_accuracy_drop_points": self.max_accuracy_drop_points,
            "eval_rows": self.eval_rows,
            "latency": {"batch_size": 1, "runs": LATENCY_RUNS, "intra_op_threads": LATENCY_THREADS},
        }


def onnx_session(path: str | Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(model_input=str(src), model_output=str(dst), weight_type=QuantType.QInt8)
    return Path(dst)


def accuracy(path: str | Path, x: np.ndarray, y: np.ndarray) -> float:
    probabilities = onnx_session(path).run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32)})[0]
    return float(np.mean(np.argmax(probabilities, axis=1) == y))


def latency_ms(path: str | Path, sample: np.ndarray, runs: int = LATENCY_RUNS) -> float:
    """Mean wall time of one batch-of-1 ``run`` on a single-threaded session."""
    session = onnx_session(path, threads=LATENCY_THREADS)
    feed = {INPUT_NAME: sample[:1].astype(np.float32)}
    for _ in range(LATENCY_WARMUP):
        session.run([OUTPUT_NAME], feed)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run([OUTPUT_NAME], feed)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.fmean(times), 4)


def measure(method: str, path: Path, x: np.ndarray, y: np.ndarray) -> Candidate:
    return Candidate(
        method=method,
        file=path.name,
        size_bytes=path.stat().st_size,
        accuracy=accuracy(path, x, y),
        latency_ms=latency_ms(path, x),
    )


def compress_and_gate(
    fp32_path: Path,
    int8_path: Path,
    x: np.ndarray,
    y: np.ndarray,
    *,
    max_accuracy_drop_points: float = DEFAULT_MAX_ACCURACY_DROP_POINTS,
) -> Compression:
    """Quantise, measure both candidates on the same held-out rows, and pick the one to publish."""
    fp32 = measure(FP32, fp32_path, x, y)
    int8 = measure(INT8_DYNAMIC, quantize_int8(fp32_path, int8_path), x, y)
    chosen = choose(fp32, int8, max_accuracy_drop_points)
    return Compression(chosen, [fp32, int8], max_accuracy_drop_points, eval_rows=len(y))


def choose(fp32: Candidate, compressed: Candidate, max_accuracy_drop_points: float) -> Candidate:
    """The accuracy gate: the compressed candidate wins unless it loses more than the allowed points."""
    drop_points = round((fp32.accuracy - compressed.accuracy) * 100, 9)  # 0.98 - 0.975 is not exactly 0.005
    if drop_points <= max_accuracy_drop_points:
        compressed.accepted, fp32.accepted = True, False
        compressed.reason = (
            f"accuracy drop {drop_points:.2f} points <= {max_accuracy_drop_points:g} allowed; "
            f"{fp32.size_bytes / compressed.size_bytes:.1f}x smaller"
        )
        fp32.reason = f"superseded by {compressed.method}"
        return compressed
    compressed.accepted, fp32.accepted = False, True
    compressed.reason = f"accuracy drop {drop_points:.2f} points > {max_accuracy_drop_points:g} allowed"
    fp32.reason = f"{compressed.method} rejected by the accuracy gate"
    return fp32
