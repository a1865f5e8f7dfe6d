"""In-process measurements, each in a fresh child process: ``python -m bench.child <what> ... <out.json>``.

- ``first-request MODULE EVENT``: import the handler, then answer one event (run under ``-X importtime``,
  a marker on stderr separates what the import paid from what the first request paid);
- ``items lazy|eager``: the work ApiFunction defers (bench/eager_handler/eager.py), step by step: eager,
  the eager wrapper's import, which does it first; lazy, the handler's import, then each step as its
  first request would pay it;
- ``latency EVENTS CALLS REPEATS``: warm handler latency per event, against a bare ``session.run`` (or the
  SavedModel call) on the same session and the same input, and for ours its inference core alone (``_core``:
  the same JSON, checks and formatting without Powertools' resolver, decorators and alias lookup); with
  ``bench.common.TRACED_ENV``, Powertools' Tracer on, X-Ray's daemon a UDP socket of this process;
- ``batch KEY ETAG CHUNK``: BatchFunction's core on one file, its rows/s, peak RSS and where the time went;
- ``build MODEL``: the session built from a local file as a cold ApiFunction builds it
  (``model_cache.build_session`` with the function's vCPU threads), its seconds and the process's peak
  RSS over its baseline (onnxruntime and numpy imported): the size ladder's "build alone";
- ``bare-batch MODEL ROWS.npy SIZES``: a bare ``session.run`` over the same rows at each batch size;
- ``compression FILES ROWS.npy CALLS REPEATS``: batch-1 latency of each compression candidate, and at the
  batch of all the file's rows when it holds more than one;
- ``ort-settings FILES ROWS.npy CALLS REPEATS``: the bare ``session.run`` of each model under the served
  onnxruntime settings (``model_cache.build_session``) and under each setting changed alone, at batch 1 and
  at the batch of all the file's rows, with each run's ratio to the setting it is compared with;
- ``machine-speed REPEATS``: a fixed pure-Python workload, to tell a slower machine from a slower build.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import XRAY_SINK, vm_hwm_mib, vm_rss_mib
from bench.stats import Stat, percentile

MARK = "maas-bench: import done"


class Context:
    """The fields Powertools reads from Lambda's context object."""

    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "ApiFunction")
    memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"))
    invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
    aws_request_id = "maas-bench"


def _handler(module: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    handler: Callable[[dict[str, Any], Any], dict[str, Any]] = importlib.import_module(module).lambda_handler
    return handler


def first_request(module: str, event_path: str) -> dict[str, Any]:
    event = json.loads(Path(event_path).read_text())
    started = time.perf_counter()
    handler = _handler(module)
    imported = time.perf_counter()
    rss_after_import = vm_hwm_mib()
    print(MARK, file=sys.stderr, flush=True)
    response = handler(event, Context())
    answered = time.perf_counter()
    handler_module = importlib.import_module(module)
    loaded = getattr(handler_module, "models", None)
    return {
        "eager_ms": getattr(handler_module, "EAGER_MS", None),
        "status": response.get("statusCode"),
        "import_ms": (imported - started) * 1000,
        "first_request_ms": (answered - imported) * 1000,
        "model_load_ms": [m["load_ms"] for m in loaded.loaded()] if loaded is not None else [],
        "peak_rss_after_import_mib": rss_after_import,
        "peak_rss_mib": vm_hwm_mib(),
    }


def items(mode: str) -> dict[str, Any]:
    """Each deferred step's ms: at import in the eager wrapper, or after the handler's import (lazy)."""
    if mode == "eager":
        wrapper = importlib.import_module("app")  # bench/eager_handler/app.py, first on the path
        return {"mode": mode, "ms": dict(wrapper.EAGER_MS)}
    if mode != "lazy":
        raise SystemExit(f"items: lazy or eager, not {mode!r}")
    started = time.perf_counter()
    handler = importlib.import_module("maas_core.functions.api.app")
    ms = {"handler_import": (time.perf_counter() - started) * 1000}
    import eager

    ms["s3_client_made"] = eager.timed(eager.s3_client_made)
    ms["onnxruntime"] = eager.timed(eager.onnxruntime_session_options)
    ms["route_models"] = eager.timed(lambda: eager.route_models(handler.app, eager.PREDICT))
    return {"mode": mode, "ms": ms}


def _timed(call: Callable[[], Any], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _take_turns(calls_by_label: dict[str, Callable[[], Any]], calls: int, repeats: int) -> dict[str, list[list[float]]]:
    """``repeats`` runs of ``calls`` timed calls of each target, the targets taking turns (run 1 of every
    target, then run 2, ...), so that a target's runs are seconds apart: this machine's speed changes
    within a second (its host's other tenants), and runs taken back to back would all catch the same
    moment and report too narrow a spread. Run i of every target is taken in the same turn."""
    for call in calls_by_label.values():
        for _ in range(max(10, calls // 10)):
            call()  # warm-up: first-call allocations, caches
    runs: dict[str, list[list[float]]] = {label: [] for label in calls_by_label}
    for _ in range(repeats):
        for label, call in calls_by_label.items():
            runs[label].append(_timed(call, calls))
    return runs


def _interleaved(calls_by_label: dict[str, Callable[[], Any]], calls: int, repeats: int) -> dict[str, Any]:
    """p50 and p99 of ``calls`` calls of each target, ``repeats`` runs each (``_take_turns``); each figure
    is the median of its runs."""
    runs = _take_turns(calls_by_label, calls, repeats)
    return {
        label: {
            "p50_ms": Stat.of(percentile(r, 50) for r in timed).to_dict(),
            "p99_ms": Stat.of(percentile(r, 99) for r in timed).to_dict(),
            "calls": calls,
        }
        for label, timed in runs.items()
    }


def latency(module: str, events_path: str, calls: int, repeats: int) -> dict[str, Any]:
    """``events_path`` holds {label: event}; each is timed through the handler and bare."""
    import numpy as np

    events = json.loads(Path(events_path).read_text())
    sink = _xray_daemon() if os.environ.get(XRAY_SINK) else None
    handler = _handler(module)
    app = importlib.import_module(module)
    if sink is not None and app.tracer.disabled:
        raise RuntimeError("traced latency asked, but the handler's Tracer is disabled")
    context = Context()
    targets: dict[str, Callable[[], Any]] = {}
    instances = {}
    for label, event in events.items():
        response = handler(event, context)
        if response.get("statusCode") != 200:
            raise RuntimeError(f"{label}: {response.get('statusCode')} {str(response.get('body'))[:300]}")
        given = json.loads(event["body"])["instances"]
        if hasattr(app, "models"):  # ours: the very session the handler holds, fed what the handler feeds it
            loaded = app.models.get(event["pathParameters"]["name"])
            spec, session = loaded.manifest.inputs[0], loaded.session
            # A text model's ids come from the handler's own tokenizer; other models take the numbers.
            x = loaded.tokenizer(spec).encode(given) if spec.tokenizer else np.asarray(given, dtype=np.float32)
            targets[f"{label}/bare"] = functools.partial(session.run, None, {session.get_inputs()[0].name: x})
            targets[f"{label}/core"] = _core(app, event, loaded)
        else:  # the TensorFlow handler: its loaded SavedModel, called directly
            targets[f"{label}/bare"] = functools.partial(app._model[0].serve, np.asarray(given, dtype=np.float32))
        targets[f"{label}/handler"] = functools.partial(handler, event, context)
        instances[label] = len(given)
    figures = _interleaved(targets, calls, repeats)
    return {
        label: {
            "handler": figures[f"{label}/handler"],
            "bare": figures[f"{label}/bare"],
            **({"core": figures[f"{label}/core"]} if f"{label}/core" in figures else {}),
            "instances": count,
            "handler_profile": profile(targets[f"{label}/handler"], calls),
        }
        for label, count in instances.items()
    }


def _xray_daemon() -> Any:
    """A UDP socket on 127.0.0.1 where X-Ray's SDK sends what it traces (set before the handler's import: the
    SDK reads AWS_XRAY_DAEMON_ADDRESS when it is imported). Nothing reads it: a full buffer drops datagrams,
    as a daemon that falls behind would, and the sender never waits."""
    import socket

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    os.environ["AWS_XRAY_DAEMON_ADDRESS"] = f"127.0.0.1:{sink.getsockname()[1]}"
    return sink


def _core(app: Any, event: dict[str, Any], loaded: Any) -> Callable[[], str]:
    """The handler's inference core on one event, without the web framework around it: the body read as the
    handler reads a predict body (shared.tensor_json), the tensors checked and built, ``session.run`` with its
    finiteness check, the predictions formatted and the response body written. Left out: Powertools' resolver
    (routing, OpenAPI validation of path, query and body), the Logger, Tracer and Metrics decorators, the alias
    lookup and the request's metrics. Handler minus core is what those cost; core minus bare is what reading and writing
    JSON costs. Returns the call to time (its imports done here, once)."""
    from maas_core.shared import tensor_json
    from maas_core.shared.http import read_json
    from maas_core.shared.inference import feeds_from_body, format_predictions, run
    from maas_core.shared.json_codec import dumps

    def core() -> str:
        body = read_json(event["body"], tensor_json.loads)  # a predict body, as check_body reads it
        outputs = run(loaded, feeds_from_body({"instances": body["instances"]}, loaded, app.MAX_BATCH_SIZE))
        predictions = format_predictions(loaded, outputs)
        return dumps({"model": loaded.name, "version": loaded.version, "predictions": predictions})

    return core


def _group(filename: str, function: str) -> str:
    """Where a profiled function lives: the top-level package of its file, or the builtin's owner."""
    if filename == "~":
        if "InferenceSession" in function or "saved_model" in function or "tensorflow" in function:
            return "the model call (session.run)"
        return "builtins" if "json" not in function else "json"
    stdlib = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]}
    for entry in sorted((p.rstrip("/") for p in sys.path if p), key=len, reverse=True):
        if filename.startswith(entry + "/"):
            top = filename[len(entry) + 1 :].split("/")[0].removesuffix(".py")
            return f"{top} (stdlib)" if entry in stdlib else top
    return Path(filename).stem


def profile(call: Callable[[], Any], calls: int) -> dict[str, dict[str, float]]:
    """Share of the handler's time by package (cProfile own time; the profiler inflates Python code)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    own: dict[str, float] = {}
    functions: dict[str, float] = {}
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, line, function), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        group = _group(filename, function)
        own[group] = own.get(group, 0.0) + tottime
        where = function if filename == "~" else f"{group}:{Path(filename).name}:{line}({function})"
        functions[where] = functions.get(where, 0.0) + tottime
    total = sum(own.values()) or 1.0

    def top(values: dict[str, float], count: int) -> dict[str, float]:
        ranked = sorted(values.items(), key=lambda item: -item[1])
        return {k: round(100 * v / total, 1) for k, v in ranked[:count]}

    return {"by_package_pct": top(own, 10), "by_function_pct": top(functions, 8)}


class _Clock:
    """Wall time spent inside wrapped functions, by phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started

        return timed

    def wrap_iterator(self, phase: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            rows = fn(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    row = next(rows)
                except StopIteration:
                    return
                finally:
                    self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started
                yield row

        return timed


def batch(key: str, etag: str, chunk_rows: int) -> dict[str, Any]:
    """BatchFunction's core (``shared.batch.score_object``) on one file, with its time split by phase."""
    import maas_core.shared.batch as core
    from maas_core.shared.aws import s3_client
    from maas_core.shared.model_cache import ModelCache

    clock = _Clock()
    core.read_jsonl = clock.wrap_iterator("read and parse JSON Lines", core.read_jsonl)
    core.feeds_from_body = clock.wrap("check rows (feeds_from_body)", core.feeds_from_body)
    core.run = clock.wrap("session.run", core.run)
    core.format_predictions = clock.wrap("format predictions", core.format_predictions)
    writer = core.S3Writer

    class TimedWriter(writer):  # type: ignore[misc, valid-type]
        write_line = clock.wrap("write JSON Lines and upload", writer.write_line)

    core.S3Writer = TimedWriter
    before = vm_hwm_mib()
    models = ModelCache(os.environ["MODEL_BUCKET"])
    started = time.perf_counter()
    summary = core.score_object(s3_client(), os.environ["MODEL_BUCKET"], key, etag, models, chunk_rows)
    wall = time.perf_counter() - started
    return {
        "rows": summary["rows"],
        "failed": summary["failed"],
        "wall_s": wall,
        "rows_per_s": summary["rows"] / wall,
        "peak_rss_mib": vm_hwm_mib(),
        "rss_before_scoring_mib": before,
        "phases_s": clock.seconds,
    }


def build(model: str) -> dict[str, Any]:
    import numpy  # noqa: F401 - in the baseline, as in the handler before its first model
    import onnxruntime  # noqa: F401

    from maas_core.shared.model_cache import build_session, lambda_vcpus

    base = vm_rss_mib()
    started = time.perf_counter()
    session = build_session(model, threads=lambda_vcpus())
    seconds = time.perf_counter() - started
    del session
    return {"build_s": seconds, "peak_rss_over_baseline_mib": vm_hwm_mib() - base, "baseline_mib": base}


def bare_batch(model_path: str, rows_path: str, sizes: str) -> dict[str, Any]:
    """rows/s of a bare ``session.run`` over the rows of a .npy file at each batch size (the function's
    threads), three passes each, every pass a run, the sizes taking turns."""
    import numpy as np

    from maas_core.shared.model_cache import build_session, lambda_vcpus

    threads = lambda_vcpus()
    session = build_session(str(model_path), threads=threads)  # from the file, as serving builds it
    x = np.load(rows_path)
    name = session.get_inputs()[0].name
    batch_sizes = [int(s) for s in sizes.split(",")]
    for size in batch_sizes:
        session.run(None, {name: x[:size]})
    out: dict[str, list[float]] = {str(size): [] for size in batch_sizes}
    for _ in range(3):  # the sizes take turns, as in _interleaved
        for size in batch_sizes:
            started = time.perf_counter()
            for start in range(0, len(x), size):
                session.run(None, {name: x[start : start + size]})
            out[str(size)].append(len(x) / (time.perf_counter() - started))
    return {"threads": threads, "rows": len(x), "rows_per_s": out}


def compression(files_path: str, rows_path: str, calls: int, repeats: int) -> dict[str, Any]:
    """Latency of each candidate (one thread): {method: path} in; {method: figures} out at batch 1, and
    {"<method> x<n>": figures} at the batch of all n rows ROWS.npy holds, when n > 1, with a tenth of the
    calls (each takes up to n times as long)."""
    import numpy as np

    from maas_core.shared.model_cache import build_session

    x = np.load(rows_path)
    one: dict[str, Callable[[], Any]] = {}
    many: dict[str, Callable[[], Any]] = {}
    for method, path in json.loads(Path(files_path).read_text()).items():
        session = build_session(str(path), threads=1)
        name = session.get_inputs()[0].name
        one[method] = functools.partial(session.run, None, {name: x[:1]})
        if len(x) > 1:
            many[f"{method} x{len(x)}"] = functools.partial(session.run, None, {name: x})
    return {**_interleaved(one, calls, repeats), **(_interleaved(many, max(10, calls // 10), repeats) if many else {})}


# The settings timed against the served ones: key -> (label, what changes from the served settings at one
# thread, the key each run is divided by). "served-1" is build_session(threads=1), what a function of up to
# 1,769 MB runs; "served-2" is build_session(threads=2), what one of 1,770 to 3,538 MB runs.
ORT_SETTINGS: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "served-1": ("served, 1 thread (up to 1,769 MB)", {}, None),
    "extended": ("graph optimisation EXTENDED, 1 thread", {"level": "ORT_ENABLE_EXTENDED"}, "served-1"),
    "basic": ("graph optimisation BASIC, 1 thread", {"level": "ORT_ENABLE_BASIC"}, "served-1"),
    # onnxruntime runs PARALLEL as SEQUENTIAL with one inter-op thread (the served count): it gets two.
    "parallel": (
        "execution mode PARALLEL with 2 inter-op threads, 1 thread",
        {"mode": "ORT_PARALLEL", "inter_op": 2},
        "served-1",
    ),
    "served-2": ("served, 2 threads (1,770 to 3,538 MB)", {"threads": 2}, "served-1"),
    "no-spin-2": ("2 threads, spinning off", {"threads": 2, "spinning": False}, "served-2"),
}
SPINNING = "session.intra_op.allow_spinning"


def _options_of(session: Any) -> dict[str, Any]:
    """The settings a built session runs with, as onnxruntime reports them."""
    opts = session.get_session_options()
    try:
        spinning = opts.get_session_config_entry(SPINNING)
    except RuntimeError:  # not set: onnxruntime's default, which spins
        spinning = "default (on)"
    return {
        "intra_op_num_threads": opts.intra_op_num_threads,
        "inter_op_num_threads": opts.inter_op_num_threads,
        "execution_mode": opts.execution_mode.name,
        "graph_optimization_level": opts.graph_optimization_level.name,
        "allow_spinning": spinning,
    }


def _changed(path: str, served: Any, change: dict[str, Any]) -> Any:
    """A session of ``path`` with the served session's settings, but for ``change``."""
    import onnxruntime as ort

    base = served.get_session_options()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = change.get("threads", base.intra_op_num_threads)
    opts.inter_op_num_threads = change.get("inter_op", base.inter_op_num_threads)
    opts.execution_mode = getattr(ort.ExecutionMode, change.get("mode", base.execution_mode.name))
    opts.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, change.get("level", base.graph_optimization_level.name)
    )
    if "spinning" in change:
        opts.add_session_config_entry(SPINNING, "1" if change["spinning"] else "0")
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def ort_settings(files_path: str, rows_path: str, calls: int, repeats: int) -> dict[str, Any]:
    """{model: path} in; per "<model> x<batch>" and setting, the p50 of a bare session.run and each run's
    p50 over the p50 of the setting it is compared with, taken in the same turn. Batch 1 takes ``calls``
    calls a run, the batch of all the rows a tenth of them; every model and setting of a batch size take
    turns in one ``_take_turns``, so that the ratios compare runs seconds apart."""
    import numpy as np

    from maas_core.shared.model_cache import build_session

    x = np.load(rows_path)
    sessions: dict[tuple[str, str], Any] = {}
    served_options = {}
    for model, path in json.loads(Path(files_path).read_text()).items():
        served = build_session(str(path), threads=1)
        served_options[model] = _options_of(served)
        for key, (_label, change, _versus) in ORT_SETTINGS.items():
            if key == "served-1":
                sessions[model, key] = served
            elif set(change) == {"threads"}:
                sessions[model, key] = build_session(str(path), threads=change["threads"])
            else:
                sessions[model, key] = _changed(str(path), served, change)
            if key != "served-1" and _options_of(sessions[model, key]) == served_options[model]:
                # onnxruntime set the change aside (as it does PARALLEL with one inter-op thread): the row
                # would time the served settings under another name.
                raise RuntimeError(f"{key}: onnxruntime ran {change} with the served settings")
    timed: dict[str, dict[str, Any]] = {}
    for size, count in ((1, calls), (len(x), max(10, calls // 10))):
        targets: dict[str, Callable[[], Any]] = {}
        for (model, key), session in sessions.items():
            targets[f"{model} x{size}/{key}"] = functools.partial(
                session.run, None, {session.get_inputs()[0].name: x[:size]}
            )
        p50s = {
            label: [percentile(r, 50) for r in runs] for label, runs in _take_turns(targets, count, repeats).items()
        }
        for model in served_options:
            row = timed.setdefault(f"{model} x{size}", {})
            for key, (_label, _change, versus) in ORT_SETTINGS.items():
                mine = p50s[f"{model} x{size}/{key}"]
                row[key] = {"p50_ms": Stat.of(mine).to_dict(5), "calls": count}
                if versus:
                    theirs = p50s[f"{model} x{size}/{versus}"]
                    row[key]["ratio"] = Stat.of(a / b for a, b in zip(mine, theirs, strict=True)).to_dict(3)
    settings = {key: {"label": label, "versus": versus} for key, (label, _change, versus) in ORT_SETTINGS.items()}
    return {"served_options": served_options, "settings": settings, "timed": timed}


def machine_speed(repeats: int) -> dict[str, Any]:
    """ms of one fixed pure-Python workload (the interpreter work that dominates a cold start), ``repeats`` times."""

    def work() -> int:
        total = 0
        for i in range(300_000):
            total += (i * i) % 7
        return total

    work()
    return {"python_loop_ms": Stat.of(_timed(work, repeats)).to_dict(2)}


def main(argv: list[str]) -> int:
    what, *args, out = argv
    if what == "first-request":
        result = first_request(args[0], args[1])
    elif what == "items":
        result = items(args[0])
    elif what == "latency":
        result = latency(args[0], args[1], int(args[2]), int(args[3]))
    elif what == "batch":
        result = batch(args[0], args[1], int(args[2]))
    elif what == "build":
        result = build(args[0])
    elif what == "bare-batch":
        result = bare_batch(args[0], args[1], args[2])
    elif what == "compression":
        result = compression(args[0], args[1], int(args[2]), int(args[3]))
    elif what == "ort-settings":
        result = ort_settings(args[0], args[1], int(args[2]), int(args[3]))
    elif what == "machine-speed":
        result = machine_speed(int(args[0]))
    else:
        raise SystemExit(f"unknown measurement {what!r}")
    Path(out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
