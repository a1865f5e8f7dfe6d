"""The compression menu: candidates, their measured size, accuracy and latency, and the gate.

Candidates (``compression`` hyperparameter, comma-separated, or ``all``):

- ``fp32``: the exported Keras model; the baseline, always evaluated.
- ``int8-dynamic``: weights int8, activations quantised at run time (``quantize_dynamic``).
- ``int8-static``: QDQ int8 with activation ranges calibrated on a sample of the training channel.
- ``fp16``: weights and activations float16, float32 at the graph's input and output.
- ``pruned``: the model fine-tuned to a target weight sparsity, exported, then dynamic int8.
- ``distilled``: a smaller student trained on the teacher's softened outputs, exported fp32.

The ONNX-level candidates are built here; ``pruned`` and ``distilled`` need Keras training, so the
job builds their files and hands them to :func:`evaluate` like any other. Every candidate is then
measured on the same held-out rows. One that cannot be built, that onnxruntime cannot load, whose
graph inputs/outputs differ from fp32's, or that fails parity is rejected with the reason, and the
job goes on. The gate passes the candidates whose accuracy is within ``max_accuracy_drop_points``
percentage points of fp32's; of them, :func:`choose` publishes the best by the job's ``objective``:

- ``cost`` (the default): the lowest expected Lambda cost per request (training.cost: the measured
  one-thread ``session.run`` at batch 1 and at a typical batch of 32, at the serving memory, plus the
  download at a cold start spread over the container's requests);
- ``latency``: the lowest ``session.run`` latency at batch 1;
- ``size``: the smallest file.

Latencies are noisy: under ``cost`` and ``latency``, candidates within NEAR_MARGIN (10%) of the best
figure count as equal, and the smallest file of them wins (then the better metric, then menu order),
so a rerun does not flip between two candidates the measurement cannot tell apart. Accuracy is a
fraction (0..1) everywhere; only the gate is in points. A regression model is measured by RMSE (and
MAE) instead, and the gate accepts a candidate whose RMSE is at most ``max_rmse_increase_pct`` percent
above fp32's; the objective is the same.
"""

from __future__ import annotations

import gzip
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maas_core.shared.manifest import CLASSIFICATION, REGRESSION, GraphIO, graph_tensors
from training import cost
from training.cost import COST, DEFAULT_OBJECTIVE, LATENCY, OBJECTIVES, SIZE

FP32 = "fp32"
INT8_DYNAMIC = "int8-dynamic"
INT8_STATIC = "int8-static"
FP16 = "fp16"
PRUNED = "pruned"
DISTILLED = "distilled"
METHODS = (FP32, INT8_DYNAMIC, INT8_STATIC, FP16, PRUNED, DISTILLED)
FILES = {
    FP32: "model.fp32.onnx",
    INT8_DYNAMIC: "model.int8.onnx",
    INT8_STATIC: "model.int8-static.onnx",
    FP16: "model.fp16.onnx",
    PRUNED: "model.pruned.onnx",
    DISTILLED: "model.distilled.onnx",
}
DEFAULT_COMPRESSION = f"{INT8_DYNAMIC},{INT8_STATIC},{FP16}"  # the ones that need no extra training
DEFAULT_MAX_ACCURACY_DROP_POINTS = 0.5
DEFAULT_MAX_RMSE_INCREASE_PCT = 1.0
DEFAULT_DISTILLATION_TEMPERATURE = 4.0  # softens the teacher's outputs the distilled student learns from
CALIBRATION_BATCH = 50
LATENCY_RUNS = 50
LATENCY_ROUNDS = 5  # of LATENCY_RUNS / LATENCY_ROUNDS runs each; the figure is the lowest round's median
LATENCY_BUDGET_S = 2.0  # per batch size: a large model's batch of 32 stops after fewer rounds (one at least)
LATENCY_WARMUP = 5
LATENCY_THREADS = 1  # a Lambda function has one or two vCPUs; measure what it will see
GZIP_LEVEL = 9
# Max |candidate - source| over the held-out probabilities that a candidate may show. An fp32
# export must compute what Keras computes; fp16 rounds (~1e-3 relative); int8 is lossy by design,
# so its difference is recorded and its accuracy gated instead. For outputs beyond 0..1 (a
# regression's prediction) the tolerance is relative to the largest magnitude: see parity_scale.
PARITY_TOLERANCE = {FP32: 1e-4, FP16: 1e-2}

# Eight measurements of the same file (latencies_ms, fresh sessions, a shared 2-core machine) spread by
# at most 6% for each of the digits CNN's candidates at batch 1 and 32: a smaller difference than this
# margin is not a measured one.
NEAR_MARGIN = 0.10


def parity_scale(reference: np.ndarray) -> float:
    """What a parity tolerance is multiplied by: 1 for probabilities, max |output| beyond that."""
    return max(1.0, float(np.max(np.abs(reference)))) if reference.size else 1.0


class CandidateError(RuntimeError):
    """A candidate that cannot be published; the message is the reason recorded for it."""


@dataclass
class Candidate:
    method: str
    file: str
    size_bytes: int
    accuracy: float | None
    latency_ms: float | None
    gzip_bytes: int = 0
    source: str = ""
    parity_max_abs_diff: float | None = None
    accepted: bool = False
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    rmse: float | None = None  # regression only, as is mae
    mae: float | None = None
    batch_latency_ms: float | None = None  # session.run of training.cost.TYPICAL_BATCH rows; latency_ms: of 1
    usd_per_million: float | None = None  # training.cost.candidate_usd_per_million at the job's memory

    def figure(self, objective: str) -> float:
        """What ``objective`` ranks by, lower is better (infinite when not measured)."""
        value = {COST: self.usd_per_million, LATENCY: self.latency_ms, SIZE: self.size_bytes}[objective]
        return float("inf") if value is None else float(value)

    @property
    def usable(self) -> bool:
        """Built, loaded, the right I/O and parity: it only has the metric's gate left to pass."""
        return self.accuracy is not None or self.rmse is not None

    def to_dict(self) -> dict[str, Any]:
        """The manifest entry: a classifier's has ``accuracy``; a regression's ``rmse`` and ``mae``."""
        entry = asdict(self)
        regression = self.rmse is not None
        for key in ("rmse", "mae"):
            if entry[key] is None:
                del entry[key]
        if regression:
            del entry["accuracy"]
        return entry


@dataclass
class Compression:
    chosen: Candidate
    candidates: list[Candidate]
    max_accuracy_drop_points: float
    eval_rows: int
    task: str = CLASSIFICATION
    max_rmse_increase_pct: float = DEFAULT_MAX_RMSE_INCREASE_PCT
    objective: str = DEFAULT_OBJECTIVE
    memory_mb: int = cost.DEFAULT_MEMORY_MB

    @property
    def fp32(self) -> Candidate:
        return next(c for c in self.candidates if c.method == FP32)

    def to_manifest(self) -> dict[str, Any]:
        gate: dict[str, Any] = {"max_accuracy_drop_points": self.max_accuracy_drop_points}
        within = "whose accuracy is within max_accuracy_drop_points of fp32"
        if self.task == REGRESSION:
            gate = {"max_rmse_increase_pct": self.max_rmse_increase_pct}
            within = "whose rmse is at most max_rmse_increase_pct percent above fp32's"
        return {
            "method": self.chosen.method,
            "candidates": [c.to_dict() for c in self.candidates],
            "fp32_size_bytes": self.fp32.size_bytes,
            "compressed_size_bytes": self.chosen.size_bytes,
            **gate,
            "eval_rows": self.eval_rows,
            "objective": self.objective,
            "selection": selection_rule(self.objective, within),
            "latency": {
                "batch_size": 1,
                "typical_batch_size": cost.TYPICAL_BATCH,
                "statistic": f"lowest median of up to {LATENCY_ROUNDS} rounds",
                "runs": LATENCY_RUNS,
                "intra_op_threads": LATENCY_THREADS,
            },
            "cost_model": {
                "usd_per_million": "Lambda duration per million requests, request charge left out (training.cost)",
                "memory_mb": self.memory_mb,
                "arch": cost.DEFAULT_ARCH,
                "gb_second_usd": cost.GB_SECOND_USD[cost.DEFAULT_ARCH],
                "prices_as_of": cost.PRICES_AS_OF,
                "mb_per_vcpu": cost.MB_PER_VCPU,
                "requests_per_container": cost.REQUESTS_PER_CONTAINER,
                "s3_bytes_per_s": cost.S3_BYTES_PER_S,
            },
            "gzip_level": GZIP_LEVEL,
        }


def selection_rule(objective: str, within: str) -> str:
    """The manifest's ``selection``: the rule that published the chosen candidate, in words."""
    if objective == SIZE:
        return f"smallest size_bytes {within}"
    figure = {
        COST: "usd_per_million: expected Lambda duration cost of latency_ms and batch_latency_ms at memory_mb, "
        "plus the download spread over requests_per_container",
        LATENCY: "latency_ms: session.run of one row, one thread",
    }[objective]
    return (
        f"lowest {figure}, {within}; candidates within {NEAR_MARGIN:.0%} of the lowest count as equal "
        "and the smallest size_bytes of them wins"
    )


def parse_menu(text: str) -> list[str]:
    """``"int8-static, fp16"`` -> ``["fp32", "int8-static", "fp16"]``: fp32 first, menu order, no repeats."""
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    if names == ["all"]:
        return list(METHODS)
    unknown = [n for n in names if n not in METHODS]
    if unknown or not names:
        raise ValueError(f"compression must be 'all' or a comma list of {', '.join(METHODS)}; got {text!r}")
    return [m for m in METHODS if m == FP32 or m in names]


def onnx_session(path: str | Path, threads: int = 0) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _io_names(session: Any) -> tuple[str, str]:
    """The one input and one output every exported family has, by the names the graph gives them."""
    return session.get_inputs()[0].name, session.get_outputs()[0].name


def _as_input(session: Any, x: np.ndarray) -> np.ndarray:
    """Rows as the graph's input takes them: int64 token ids for the text families, else float32."""
    return x.astype(np.int64 if session.get_inputs()[0].type == "tensor(int64)" else np.float32)


def predict(path: str | Path, x: np.ndarray) -> np.ndarray:
    session = onnx_session(path)
    input_name, output_name = _io_names(session)
    return np.asarray(session.run([output_name], {input_name: _as_input(session, x)})[0])


# -- building the ONNX-level candidates ---------------------------------------------------------


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(model_input=str(src), model_output=str(dst), weight_type=QuantType.QInt8)
    return Path(dst)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over fixed batches of float32 images."""

    def __init__(self, x: np.ndarray, input_name: str, batch: int = CALIBRATION_BATCH) -> None:
        self.input_name = input_name
        self._batches = [x[i : i + batch] for i in range(0, len(x), batch)]
        self._iter: Iterator[np.ndarray] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._iter, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._iter = iter(self._batches)


def calibration_sample(x: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """A seeded sample of (training) rows for static quantisation's activation ranges."""
    if rows >= len(x):
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), size=rows, replace=False))]


def quantize_int8_static(src: str | Path, dst: str | Path, calibration: np.ndarray) -> Path:
    """QDQ int8, per-channel weights, MinMax activation ranges from ``calibration``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    session = onnx_session(src)
    reader = _Calibration(_as_input(session, calibration), _io_names(session)[0])

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return reader.get_next()

        def rewind(self) -> None:
            reader.rewind()

    quantize_static(
        model_input=str(src),
        model_output=str(dst),
        calibration_data_reader=Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    return Path(dst)


def _float16_module() -> Any:
    """onnxconverter-common's float16 converter, or the copy onnxruntime ships (same function)."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        from onnxruntime.transformers import float16
    return float16


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """Float16 weights and arithmetic; ``keep_io_types`` leaves float32 at the graph's edges so
    clients (and the manifest) still speak float32. onnxruntime's CPU provider casts back to
    float32 around ops it has no float16 kernel for, so this buys size, not CPU speed."""
    import onnx

    model = _float16_module().convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return Path(dst)


def optimize_transformer(src: str | Path, dst: str | Path, model_type: str) -> tuple[Path | None, dict[str, Any]]:
    """onnxruntime's transformer optimiser (``onnxruntime.transformers.optimizer``): its offline
    fusions (Attention, SkipLayerNormalization, Gelu, ...) for ``model_type`` ("bert"). Returns the
    fused file, or None when it fused nothing, and what it fused (recorded in the manifest either way).

    ``opt_level=0``: only the transformer fusions; onnxruntime's own graph optimisations are
    hardware-specific and run where the model is served (the model cache keeps their result)."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(src), model_type=model_type, opt_level=0)
    fused = {op: n for op, n in model.get_fused_operator_statistics().items() if n}
    outcome: dict[str, Any] = {"model_type": model_type, "fused": fused}
    if not fused:
        outcome["why_not"] = (
            "no pattern matched: tf2onnx writes Keras 3's LayerNormalization as mean/variance arithmetic "
            "(GlobalAveragePool, Reciprocal(Sqrt)) and folds GELU's 1/sqrt(2) into a Mul, not the ReduceMean/Pow/Div "
            "and Div/Erf forms the fusions match; attention fusion starts from a fused layer norm"
        )
        return None, outcome
    model.save_model_to_file(str(dst))
    return Path(dst), outcome


def build(method: str, fp32_path: Path, dst: Path, *, calibration: np.ndarray) -> Path:
    if method == INT8_DYNAMIC:
        return quantize_int8(fp32_path, dst)
    if method == INT8_STATIC:
        return quantize_int8_static(fp32_path, dst, calibration)
    if method == FP16:
        return convert_fp16(fp32_path, dst)
    raise ValueError(f"{method} is not built from the fp32 ONNX file")


# -- measuring --------------------------------------------------------------------------------


def accuracy(path: str | Path, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(predict(path, x), axis=1) == y))


def latencies_ms(path: str | Path, sample: np.ndarray) -> tuple[float, float]:
    """Wall time of one ``run`` of 1 row and of training.cost.TYPICAL_BATCH rows (``sample``'s rows
    repeated when it has fewer) on a single-threaded session, as a Lambda function's one vCPU runs it."""
    session = onnx_session(path, threads=LATENCY_THREADS)
    one, batch = (
        _median_run_ms(session, np.resize(sample[:n], (n, *sample.shape[1:]))) for n in (1, cost.TYPICAL_BATCH)
    )
    return one, batch


def _median_run_ms(session: Any, rows: np.ndarray) -> float:
    """The lowest of the rounds' medians: the machine's other work (a shared build host, other jobs) only
    ever slows a run down, and a round it slowed is dropped rather than blended into one median."""
    input_name, output_name = _io_names(session)
    feed = {input_name: _as_input(session, rows)}
    for _ in range(LATENCY_WARMUP):
        session.run([output_name], feed)
    medians: list[float] = []
    deadline = time.perf_counter() + LATENCY_BUDGET_S
    while not medians or (len(medians) < LATENCY_ROUNDS and time.perf_counter() < deadline):
        times = []
        for _ in range(LATENCY_RUNS // LATENCY_ROUNDS):
            started = time.perf_counter()
            session.run([output_name], feed)
            times.append((time.perf_counter() - started) * 1000)
        medians.append(statistics.median(times))
    return round(min(medians), 4)


def gzip_bytes(path: str | Path) -> int:
    """Size after gzip -9: what a download moves, and where pruning's zeros pay off."""
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=GZIP_LEVEL, mtime=0))


def check_io(path: Path, expected: GraphIO) -> None:
    """The serving contract: same input/output names, dtypes and shapes as fp32's graph (float32,
    or int64 token ids in)."""
    found = graph_tensors(path)
    if found != expected:
        as_json = [[t.to_json() for t in tensors] for tensors in (*found, *expected)]
        raise CandidateError(f"graph inputs/outputs {as_json[:2]} differ from fp32's {as_json[2:]}")
    session = onnx_session(path)
    types = [t.type for t in (*session.get_inputs(), *session.get_outputs())]
    if any(t != "tensor(float)" for t in types[1:]) or types[0] not in ("tensor(float)", "tensor(int64)"):
        raise CandidateError(f"onnxruntime sees input/output types {types}; serving sends and reads float32")


@dataclass
class Built:
    """A candidate file and what to hold it to: the export parity (vs Keras) already measured, or
    the held-out output of the ONNX model it was derived from."""

    path: Path
    parity: float | None = None
    reference: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)


def measure(
    method: str,
    built: Built,
    x: np.ndarray,
    y: np.ndarray,
    *,
    io: GraphIO | None = None,
    source: str = "",
    task: str = CLASSIFICATION,
) -> Candidate:
    """Size, gzip size, held-out accuracy (RMSE and MAE for regression) and latency of one ONNX
    file, after the checks that reject.

    ``built.reference`` is the source ONNX model's output on ``x`` to compare with; an export brings
    its difference from Keras in ``built.parity``. Either is held to the method's tolerance, if any.
    """
    path = built.path
    candidate = Candidate(method, path.name, path.stat().st_size, None, None, gzip_bytes(path), source)
    candidate.details.update(built.details)
    try:
        onnx_session(path)
    except Exception as exc:
        raise CandidateError(f"onnxruntime cannot load it: {type(exc).__name__}: {exc}") from exc
    if io is not None:
        check_io(path, io)
    probabilities = predict(path, x)
    if not np.isfinite(probabilities).all():
        raise CandidateError("its held-out outputs hold NaN or infinite values")
    parity, reference = built.parity, built.reference
    scale = 1.0
    if reference is not None:
        parity = float(np.max(np.abs(probabilities - reference)))
        if task == CLASSIFICATION:
            agreement = float(np.mean(probabilities.argmax(1) == reference.argmax(1)))
            candidate.details["top1_agreement_with_source"] = round(agreement, 6)
        else:
            scale = parity_scale(reference)
    candidate.parity_max_abs_diff = parity
    tolerance = PARITY_TOLERANCE.get(method)
    if parity is not None and tolerance is not None and not parity <= tolerance * scale:
        raise CandidateError(f"parity: max |output - {source}| = {parity:.3g} > {tolerance * scale:g} on {len(x)} rows")
    if task == CLASSIFICATION:
        candidate.accuracy = float(np.mean(probabilities.argmax(1) == y))
    else:
        errors = probabilities.reshape(len(y)) - y.astype(np.float64)
        candidate.rmse = float(np.sqrt(np.mean(errors**2)))
        candidate.mae = float(np.mean(np.abs(errors)))
    candidate.latency_ms, candidate.batch_latency_ms = latencies_ms(path, x)
    return candidate


def evaluate(method: str, make: Callable[[], Built], x: np.ndarray, y: np.ndarray, **checks: Any) -> Candidate:
    """Build, check and measure one candidate (``checks``: ``measure``'s io, source and task). Any
    failure becomes a rejected candidate with the reason (and the file's sizes, if it got that far),
    never the job's failure."""
    path: Path | None = None
    try:
        built = make()
        path = built.path
        return measure(method, built, x, y, **checks)
    except Exception as exc:
        reason = str(exc) if isinstance(exc, CandidateError) else f"{type(exc).__name__}: {exc}"
        size, packed = (path.stat().st_size, gzip_bytes(path)) if path is not None and path.exists() else (0, 0)
        file = path.name if path is not None else FILES.get(method, "")
        source = checks.get("source", "")
        return Candidate(method, file, size, None, None, packed, source, reason=f"rejected: {reason}"[:500])


# -- the gate ---------------------------------------------------------------------------------


def drop_points(fp32: Candidate, candidate: Candidate) -> float:
    assert fp32.accuracy is not None and candidate.accuracy is not None
    return round((fp32.accuracy - candidate.accuracy) * 100, 9)  # 0.98 - 0.975 is not exactly 0.005


def choose(
    candidates: list[Candidate],
    max_accuracy_drop_points: float,
    *,
    task: str = CLASSIFICATION,
    max_rmse_increase_pct: float = DEFAULT_MAX_RMSE_INCREASE_PCT,
    objective: str = DEFAULT_OBJECTIVE,
    memory_mb: int = cost.DEFAULT_MEMORY_MB,
) -> Candidate:
    """Publish the best candidate by ``objective`` within the allowed drop of fp32 (fp32 itself if none
    is): see the module's docstring for the objectives and the rule for near-equal figures.

    Ties on size go to the higher accuracy, then to the earlier candidate in the menu. Candidates
    rejected before the gate (no accuracy) keep their reason; every other one gets one here.
    A regression task is gated on RMSE instead: see :func:`choose_regression`.
    """
    if task == REGRESSION:
        return choose_regression(candidates, max_rmse_increase_pct, objective=objective, memory_mb=memory_mb)
    return _gate(
        candidates,
        change=drop_points,
        allowed=max_accuracy_drop_points,
        tie=lambda c: -(c.accuracy or 0.0),
        long=lambda d: f"accuracy drop {d:.2f} points",
        short=lambda d: f"drop {d:.2f} points",
        limit=f"{max_accuracy_drop_points:g}",
        objective=objective,
        memory_mb=memory_mb,
    )


def price(candidates: list[Candidate], memory_mb: int) -> None:
    """Each measured candidate's ``usd_per_million`` at ``memory_mb`` (training.cost), to 4 significant digits."""
    for c in candidates:
        if c.latency_ms is not None and c.batch_latency_ms is not None:
            usd = cost.candidate_usd_per_million(c.latency_ms, c.batch_latency_ms, c.size_bytes, memory_mb)
            c.usd_per_million = float(f"{usd:.4g}")


def _gate(
    candidates: list[Candidate],
    *,
    change: Callable[[Candidate, Candidate], float],
    allowed: float,
    tie: Callable[[Candidate], float],
    long: Callable[[float], str],
    short: Callable[[float], str],
    limit: str,
    objective: str,
    memory_mb: int,
) -> Candidate:
    """The best usable candidate by ``objective`` whose metric ``change`` from fp32 is within ``allowed``
    (fp32 if none is); near-equal figures and ties on size go to ``tie``, then to menu order. Every
    usable candidate gets its reason."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    price(candidates, memory_mb)
    fp32 = next(c for c in candidates if c.method == FP32)
    within = [c for c in candidates if c.usable and change(fp32, c) <= allowed]
    near = within
    if objective != SIZE:  # within NEAR_MARGIN of the best figure: equal, as far as the measurement can tell
        lowest = min(c.figure(objective) for c in within)
        near = [c for c in within if c.figure(objective) <= lowest * (1 + NEAR_MARGIN)]
    chosen = min(near, key=lambda c: (c.size_bytes, tie(c), candidates.index(c)))
    for c in candidates:
        c.accepted = c is chosen
        if not c.usable:
            continue
        value = change(fp32, c)
        if value > allowed:
            c.reason = f"{long(value)} > {limit} allowed"
        elif c is chosen:
            c.reason = _chosen_reason(c, candidates, within, near, objective, f"{long(value)} <= {limit} allowed")
        else:
            c.reason = _passed_over_reason(c, chosen, near, objective, short(value))
    return chosen


def _describe(c: Candidate, objective: str) -> str:
    """A candidate's figure under ``objective``, in words."""
    if c.figure(objective) == float("inf"):
        return f"no {objective} measured"
    if objective == COST:
        return (
            f"${c.usd_per_million:.4g} per million requests ({c.latency_ms:.3f} ms at batch 1, "
            f"{c.batch_latency_ms:.3f} ms at batch {cost.TYPICAL_BATCH}, {c.size_bytes:,} bytes)"
        )
    if objective == LATENCY:
        return f"{c.latency_ms:.3f} ms at batch 1"
    return f"{c.size_bytes:,} bytes"


_BEST = {COST: "cheapest", LATENCY: "fastest", SIZE: "smallest"}


def _chosen_reason(
    c: Candidate, candidates: list[Candidate], within: list[Candidate], near: list[Candidate], objective: str, gate: str
) -> str:
    fp32 = next(o for o in candidates if o.method == FP32)
    if within == [fp32]:
        others = [o.method for o in candidates if o is not fp32]
        return f"baseline; no compressed candidate passed ({', '.join(others)})" if others else "baseline"
    best = min(within, key=lambda o: o.figure(objective))
    if objective == SIZE or c.figure(objective) <= best.figure(objective):
        head = f"{_BEST[objective]} within the gate"
    else:
        head = f"within {NEAR_MARGIN:.0%} of the {_BEST[objective]} within the gate ({best.method})"
    if objective != SIZE:
        head += f": {_describe(c, objective)}"
        if len(near) > 1:
            methods = ", ".join(o.method for o in near)
            head += f"; the smallest file of {methods}, all within {NEAR_MARGIN:.0%} of the {_BEST[objective]}"
    smaller = f"; {fp32.size_bytes / c.size_bytes:.1f}x smaller than fp32" if c is not fp32 else ""
    return f"{head}{': ' if objective == SIZE else '; '}{gate}{smaller}"


def _passed_over_reason(c: Candidate, chosen: Candidate, near: list[Candidate], objective: str, gate: str) -> str:
    if objective == SIZE:
        if c.method == FP32:
            return f"superseded by {chosen.method}"
        larger = f"{c.size_bytes:,} bytes, not smaller than {chosen.method}'s {chosen.size_bytes:,}"
        return f"within the gate ({gate}) but {larger}"
    if c in near:
        return (
            f"within the gate ({gate}) and within {NEAR_MARGIN:.0%} of the {_BEST[objective]} "
            f"({_describe(c, objective)}), but {c.size_bytes:,} bytes, not smaller than {chosen.method}'s "
            f"{chosen.size_bytes:,}"
        )
    ratio = c.figure(objective) / chosen.figure(objective) if chosen.figure(objective) > 0 else float("inf")
    times = f", {ratio:.1f}x {chosen.method}'s" if ratio != float("inf") else ""
    return f"within the gate ({gate}) but {_describe(c, objective)}{times}"


def rmse_increase_pct(fp32: Candidate, candidate: Candidate) -> float:
    assert fp32.rmse is not None and candidate.rmse is not None
    if fp32.rmse == 0:
        return 0.0 if candidate.rmse == 0 else float("inf")
    return round((candidate.rmse / fp32.rmse - 1) * 100, 9)


def choose_regression(
    candidates: list[Candidate],
    max_rmse_increase_pct: float,
    *,
    objective: str = DEFAULT_OBJECTIVE,
    memory_mb: int = cost.DEFAULT_MEMORY_MB,
) -> Candidate:
    """The best candidate by ``objective`` whose held-out RMSE is at most ``max_rmse_increase_pct``
    percent above fp32's (fp32 itself if none is); ties on size go to the lower RMSE, then to menu order."""
    return _gate(
        candidates,
        change=rmse_increase_pct,
        allowed=max_rmse_increase_pct,
        tie=lambda c: c.rmse or 0.0,
        long=lambda i: f"rmse {i:+.2f}% of fp32's",
        short=lambda i: f"rmse {i:+.2f}%",
        limit=f"{max_rmse_increase_pct:g}%",
        objective=objective,
        memory_mb=memory_mb,
    )
