"""`make bench` / `maas bench` / `python -m bench`: every figure, side by side with TensorFlow, in one run.

Writes bench/results.json (every figure's median, min, max and count: ``stats.summary``), the runs
behind them to the git-ignored bench/out/runs.json, bench/results.md (the tables, goals met or not, and
this run checked against the results.json it replaces) and bench/results.png (the plot README embeds),
and refreshes README's summary table between its ``bench:summary`` markers. Logs and caches live
under .maas/bench.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import batch, coldstart, imports, loadtest, models, size
from bench.common import (
    BENCH,
    ROOT,
    TRACED,
    TRACED_ENV,
    WORK,
    Runtime,
    child,
    digits,
    health_event,
    predict_event,
    say,
    step,
    write_json,
)
from bench.eager_handler.eager import LABELS
from bench.stats import compare, figures, lookup, merge, summary
from maas.template import FunctionSpec
from training.cost import TYPICAL_BATCH


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, a smaller batch file, no load test")
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds over every timed part, spread over the run; each figure pools its rounds' runs "
        "(default 5; --quick 1)",
    )
    parser.add_argument("--cold-runs", type=int, help="cold starts per variant per round (default 3; --quick 3)")
    parser.add_argument("--calls", type=int, help="warm calls per latency run (default 300; --quick 100)")
    parser.add_argument("--repeats", type=int, help="latency runs per figure per round (default 3; --quick 3)")
    parser.add_argument("--batch-mib", type=float, help="JSON Lines file size in MiB (default 25; --quick 10)")
    parser.add_argument("--batch-runs", type=int, help="batch scoring runs per round (default 2; --quick 2)")
    parser.add_argument("--no-load-test", action="store_true", help="skip the 50-client load test")
    parser.add_argument("--users", type=int, default=50, help="load test: concurrent clients")
    parser.add_argument("--seconds", type=int, default=60, help="load test: duration")
    parser.add_argument(
        "--venv",
        action="store_true",
        help="no sam build: run the functions on this virtualenv with src/ (no size figures)",
    )
    parser.add_argument("--retrain", action="store_true", help="train again even when the cached job output fits")
    parser.add_argument("--out", default=str(BENCH), help="folder for results.json, results.md, results.png")
    parser.add_argument("--no-readme", action="store_true", help="leave README's summary table as it is")
    parser.add_argument(
        "--check-against",
        metavar="RESULTS_JSON",
        help="check the figures against this results.json instead of the one the run replaces "
        "(with --render-only: check the results.json already there)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: rewrite results.md, the plot and README from results.json",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, fast in (
        ("rounds", 5, 1),
        ("cold_runs", 3, 3),
        ("calls", 300, 100),
        ("repeats", 3, 3),
        ("batch_mib", 25.0, 10.0),
        ("batch_runs", 2, 2),
    ):
        if getattr(args, name) is None:
            setattr(args, name, fast if quick else full)
    if quick:
        args.no_load_test = True
    if min(args.rounds, args.cold_runs, args.calls, args.repeats, args.batch_runs) < 1:
        parser.error("--rounds, --cold-runs, --calls, --repeats and --batch-runs take a whole number of at least 1")
    return args


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        mem_kib = next(int(line.split()[1]) for line in info if line.startswith("MemTotal:"))
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_kib / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": _version("onnxruntime"),
        "tensorflow": _version("tensorflow-cpu") if _version("tensorflow-cpu") != "-" else _version("tensorflow"),
        "keras": _version("keras"),
        "numpy": _version("numpy"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


class Sections:
    """Runs each part, keeps its wall time, and records a failure without losing the other parts.

    A part run again (the next round) pools its runs with the earlier rounds' (``stats.merge``);
    a part that failed once is not run again, and its error stands."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.failed: list[str] = []

    def run(self, name: str, title: str, fn: Callable[[], Any]) -> Any:
        if name in self.failed:
            return self.results[name]
        started = time.perf_counter()
        with step(title):
            try:
                value = fn()
            except Exception as exc:  # one failed part must not lose the others' figures
                traceback.print_exc()
                self.failed.append(name)
                value = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        spent = self.results.setdefault("sections_s", {})
        spent[name] = round(spent.get(name, 0.0) + time.perf_counter() - started, 1)
        if value is not None:
            earlier = self.results.get(name)
            self.results[name] = merge(earlier, value) if earlier is not None and "error" not in value else value
        return self.results.get(name)


def tensorflow_spec(bucket: str) -> FunctionSpec:
    environment = {"MODEL_BUCKET": bucket, "TF_MODEL_KEY": models.TF_ARCHIVE_KEY, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return FunctionSpec(
        "TensorFlowFunction", "app.lambda_handler", BENCH / "tf_handler", "python3.12", 29, 1024, environment
    )


def empty_spec() -> FunctionSpec:
    return FunctionSpec("EmptyFunction", "app.lambda_handler", BENCH / "empty_handler", "python3.12", 29, 1024, {})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    previous = Path(args.check_against) if args.check_against else out / "results.json"
    if args.render_only:
        stored = json.loads((out / "results.json").read_text())
        if args.check_against:
            stored["rerun_check"] = rerun_check(json.loads(previous.read_text()), stored)
        return _render(stored, out, args)
    args.previous = json.loads(previous.read_text()) if previous.exists() else None
    logs = WORK / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "previous", "check_against")},
        "machine": machine(),
    }
    sections = Sections(results)
    from maas.stack import load_template

    template = load_template(str(ROOT / "template.yaml"))
    api_spec, batch_spec = template.function("ApiFunction"), template.function("BatchFunction")
    bucket = api_spec.environment["MODEL_BUCKET"]

    trained = sections.run(
        "models", "models: the digits CNN and a tabular model (training job, cached)", lambda: _models(args)
    )
    if "error" in trained:
        return _finish(results, sections, out, args, started)
    digits_job, tabular_job, archive = trained.pop("_jobs")

    built = sections.run("size", "deployment size: sam build, TensorFlow's install", lambda: _build(args.venv))
    runtime: Runtime = built.pop("_runtime", None) or _venv()
    results["machine"]["function_runtime"] = runtime.label

    from maas.embedded_s3 import EmbeddedS3

    shutil.rmtree(WORK / "state", ignore_errors=True)  # the benchmark's own registry, fresh each run
    with EmbeddedS3(WORK / "state", template.bucket_names()) as s3:
        s3_env = s3.client_env()
        client = s3.client()
        results["models"]["published"] = models.publish(client, bucket, digits_job, tabular_job, archive)
        # Before batch scoring: moto's /moto-api/data.json fails (500) once a multipart upload has happened,
        # and maas.embedded_s3 then takes the running server for dead and starts an empty one.
        if not args.no_load_test:
            sections.run(
                "load_test",
                f"load test: {args.users} clients for {args.seconds} s against maas local start-api, two models",
                lambda: loadtest.run(WORK / "state", _load_plan(tabular_job), args.users, args.seconds, logs),
            )
        variants = _variants(runtime, api_spec, bucket)
        given = sections.run(
            "batch_input",
            "batch input: a JSON Lines file of digits",
            lambda: batch.put_input(client, bucket, args.batch_mib),
        )
        for n in range(args.rounds):
            _round(args, n, sections, runtime, api_spec, batch_spec, variants, s3_env, client, given, digits_job, logs)
        for name in ("imports", "imports_eager"):
            if name not in sections.failed and name in results:
                results[name] = imports.finish(results[name])
        _derive(results)
    return _finish(results, sections, out, args, started)


def _derive(results: dict[str, Any]) -> None:
    """The figures taken from other figures, after the last round."""
    if "batch" in results and "error" not in results["batch"]:
        results["batch"] = batch.finish(results["batch"])
    if "lazy_vs_eager" in results and "error" not in results["lazy_vs_eager"]:
        results["lazy_vs_eager"].update(_cold_lazy_vs_eager(results.get("cold_start") or {}))


def _venv() -> Runtime:
    from bench.common import venv_runtime

    return venv_runtime()


def _models(args: argparse.Namespace) -> dict[str, Any]:
    digits_job = models.train(models.DIGITS_HP, args.retrain)
    tabular_job = models.train(models.TABULAR_HP, args.retrain)
    archive = models.savedmodel_archive(digits_job)
    return {
        "_jobs": (digits_job, tabular_job, archive),
        "digits": {
            "hyperparameters": models.DIGITS_HP,
            "trained_now_s": digits_job.trained_s,
            "job_dir": str(digits_job.model_dir.relative_to(ROOT)),
            "train_rows": digits_job.manifest.training_job.get("train_rows"),
            "accuracy_fp32": digits_job.manifest.metrics.get("fp32_accuracy"),
        },
        "tabular": {"hyperparameters": models.TABULAR_HP, "trained_now_s": tabular_job.trained_s},
        "savedmodel_archive_bytes": archive.stat().st_size,
    }


def _build(venv: bool) -> dict[str, Any]:
    if venv:
        return {"skipped": "--venv: no sam build; the functions ran on the virtualenv with src/"}
    py312 = size.python312()
    if py312 is None:
        return {"skipped": "no python3.12 here (pyenv install 3.12): no sam build; functions run on the venv"}
    package = size.sam_build(py312, WORK / "logs" / "sam-build.log")
    figures = {"sam_build": size.package_sizes(package), "tensorflow": size.tensorflow_install()}
    runtime = size.artifact_runtime(py312, package)
    return {**figures, "_runtime": runtime}


def _function_env(runtime: Runtime, spec: FunctionSpec, s3_env: dict[str, str], tmp: Path) -> dict[str, str]:
    return runtime.environment(spec, {**s3_env, "OPTIMIZED_MODEL_DIR": str(tmp)})


def _variants(runtime: Runtime, api_spec: FunctionSpec, bucket: str) -> list[coldstart.Variant]:
    from bench.common import venv_runtime

    one = digits(1)
    eager_spec, eager_runtime = eager(api_spec, runtime)
    int8 = predict_event(models.INT8, one)
    return [
        coldstart.Variant("empty", "empty Python handler (the floor)", empty_spec(), runtime, predict_event("x", one)),
        coldstart.Variant("ours_int8", "ours, served ONNX", api_spec, runtime, int8),
        coldstart.Variant("ours_fp32", "ours, fp32 ONNX", api_spec, runtime, predict_event(models.FP32, one)),
        coldstart.Variant(
            "ours_int8_eager", "ours, served, deferred work done at INIT (eager)", eager_spec, eager_runtime, int8
        ),
        coldstart.Variant("health", "ours, GET /health (needs no model)", api_spec, runtime, health_event()),
        coldstart.Variant(
            "health_eager",
            "ours, GET /health, deferred work done at INIT (eager)",
            eager_spec,
            eager_runtime,
            health_event(),
        ),
        coldstart.Variant("tensorflow", "TensorFlow SavedModel handler", tensorflow_spec(bucket), venv_runtime(), int8),
    ]


def _round(
    args: argparse.Namespace,
    n: int,
    sections: Sections,
    runtime: Runtime,
    api_spec: FunctionSpec,
    batch_spec: FunctionSpec,
    variants: list[coldstart.Variant],
    s3_env: dict[str, str],
    client: Any,
    given: dict[str, Any],
    digits_job: models.Job,
    logs: Path,
) -> None:
    """Every timed part once, in turn: rounds spread each figure's runs over the whole run, so its
    min-max takes in the machine's drift over minutes, not only over the seconds one part lasts."""
    of = f"round {n + 1}/{args.rounds}"

    def time_files(what: str, files: dict[str, str]) -> dict[str, Any]:
        return _time_files(what, files, args, runtime, api_spec, s3_env, logs)

    repeats = 2 if args.rounds > 1 else 3  # import-time runs, a second or so each
    sections.run(
        "machine_speed",
        f"machine speed ({of}): a fixed pure-Python workload on the functions' Python",
        lambda: child(runtime, ["machine-speed", "5"], dict(os.environ), logs / "machine-speed.log"),
    )
    sections.run(
        "page_cache",
        f"page cache ({of}): each variant's files dropped, then read back by one uncounted cold start",
        lambda: {"uncached_cold_s": coldstart.prime(variants, s3_env, logs)},
    )
    sections.run(
        "cold_start",
        f"cold start ({of}): {args.cold_runs} new containers each, through the Lambda RIE",
        lambda: coldstart.measure(variants, s3_env, args.cold_runs, logs, n),
    )
    sections.run(
        "imports",
        f"import-time work of ApiFunction, per package ({of})",
        lambda: _imports(runtime, api_spec, s3_env, logs, repeats, n),
    )
    sections.run(
        "imports_eager",
        f"import-time work of ApiFunction made eager (bench/eager_handler), per package ({of})",
        lambda: _imports(runtime, api_spec, s3_env, logs, repeats, n, eager_too=True),
    )
    sections.run(
        "lazy_vs_eager",
        f"what each deferred piece of work costs, at INIT when eager and at the first request when lazy ({of})",
        lambda: _lazy_vs_eager(runtime, api_spec, s3_env, logs, repeats),
    )
    sections.run(
        "latency",
        f"warm latency ({of}): {args.repeats} x {args.calls} calls, handler vs bare",
        lambda: _latency(args, runtime, api_spec, variants, s3_env, logs),
    )
    sections.run(
        "batch",
        f"batch ({of}): BatchFunction's core on a {args.batch_mib:g} MiB JSON Lines file vs bare session.run",
        lambda: batch.measure(
            client,
            api_spec.environment["MODEL_BUCKET"],
            runtime,
            runtime.environment(batch_spec, {**s3_env, "OPTIMIZED_MODEL_DIR": str(logs / "batch-tmp")}),
            digits_job.model_dir / "model.onnx",  # the served candidate, as published
            given,
            int(batch_spec.environment["BATCH_CHUNK_ROWS"]),
            args.batch_runs,
            logs,
            n,
        ),
    )
    sections.run(
        "compression",
        f"compression candidates: size, accuracy, latency ({of})",
        lambda: _compression(digits_job, time_files),
    )
    sections.run(
        "ort_settings",
        f"onnxruntime settings: the served ones against each changed alone, bare session.run ({of})",
        lambda: _ort_settings(digits_job, time_files),
    )


def eager(api_spec: FunctionSpec, runtime: Runtime) -> tuple[FunctionSpec, Runtime]:
    """ApiFunction behind bench/eager_handler/app.py: its variables, the wrapper's folder first on the path
    and the function's own code (the sam build package, or src/) after it."""
    spec = dataclasses.replace(api_spec, handler="app.lambda_handler", code_uri=BENCH / "eager_handler")
    wrapped = Runtime(
        f"{runtime.label} + bench/eager_handler",
        runtime.python,
        runtime.package,
        (runtime.code_dir(api_spec), *runtime.extra_paths),
    )
    return spec, wrapped


def _imports(
    runtime: Runtime,
    api_spec: FunctionSpec,
    s3_env: dict[str, str],
    logs: Path,
    repeats: int,
    round_no: int,
    eager_too: bool = False,
) -> dict[str, Any]:
    module = "maas_core.functions.api.app"
    if eager_too:
        api_spec, runtime = eager(api_spec, runtime)
        module = "app"
    tmp = logs / "imports-tmp"
    env = _function_env(runtime, api_spec, s3_env, tmp)
    event = predict_event(models.INT8, digits(1))
    work = logs / ("imports-eager" if eager_too else "imports")
    work.mkdir(exist_ok=True)
    return imports.measure(runtime, module, event, env, work, repeats, round_no)


def _lazy_vs_eager(
    runtime: Runtime, api_spec: FunctionSpec, s3_env: dict[str, str], logs: Path, repeats: int
) -> dict[str, Any]:
    """Each deferred step's cost eager (at INIT) and lazy (at the first request that needs it)."""
    spec, wrapped = eager(api_spec, runtime)
    env = _function_env(wrapped, spec, s3_env, logs / "items-tmp")
    steps = imports.deferred(wrapped, env, logs, repeats=repeats)
    return {
        "steps_ms": {
            step: {
                "label": label,
                "eager_at_init": steps["eager"].get(step),
                "lazy_at_first_request": steps["lazy"].get(step),
            }
            for step, label in LABELS.items()
        },
        "handler_import_ms": {mode: steps[mode].get("handler_import") for mode in ("lazy", "eager")},
        "note": (
            "eager: bench/eager_handler/app.py imports the handler, then does each step at import (INIT); lazy: the "
            "handler as built imports none of it, and each step is timed in a fresh process right after the "
            "handler's import (what the first prediction pays for it); route_models eagerly builds every route's "
            "validation models, lazily only the predict route's; cold figures from cold_start (RIE)"
        ),
    }


def _cold_lazy_vs_eager(cold: dict[str, Any]) -> dict[str, Any]:
    """The cold starts of a route that needs none of the deferred work and of the first prediction, as
    built (lazy) and eager, from the cold start figures of the same run."""
    figures = {}
    for name, (lazy_key, eager_key, key) in {
        "health_cold_s": ("health", "health_eager", "cold_s"),
        "health_init_ms": ("health", "health_eager", "init_ms"),
        "health_peak_rss_mib": ("health", "health_eager", "peak_rss_mib"),
        "predict_cold_s": ("ours_int8", "ours_int8_eager", "cold_s"),
        "predict_init_ms": ("ours_int8", "ours_int8_eager", "init_ms"),
        "predict_peak_rss_mib": ("ours_int8", "ours_int8_eager", "peak_rss_mib"),
    }.items():
        lazy, eager_figure = (cold.get(lazy_key) or {}).get(key), (cold.get(eager_key) or {}).get(key)
        if lazy and eager_figure:
            figures[name] = {"lazy": lazy, "eager": eager_figure}
    return figures


def _latency(
    args: argparse.Namespace,
    runtime: Runtime,
    api_spec: FunctionSpec,
    variants: list[coldstart.Variant],
    s3_env: dict[str, str],
    logs: Path,
) -> dict[str, Any]:
    events = {
        f"{tag} x{n}": predict_event(name, digits(n))
        for tag, name in (("int8", models.INT8), ("fp32", models.FP32))
        for n in (1, 32)
    }
    events_path = logs / "latency-events.json"
    events_path.write_text(json.dumps(events))
    calls, repeats = str(args.calls), str(args.repeats)
    env = _function_env(runtime, api_spec, s3_env, logs / "latency-tmp")
    ours = child(
        runtime, ["latency", "maas_core.functions.api.app", str(events_path), calls, repeats], env, logs / "latency.log"
    )
    # As deployed, ApiFunction traces every request (the template's Tracing: Active): the int8 rows again with
    # Powertools' Tracer on, X-Ray's daemon a UDP socket of the child's own (bench.common.TRACED_ENV).
    traced_events = {f"{label} {TRACED}": event for label, event in events.items() if label.startswith("int8")}
    traced_path = logs / "latency-traced-events.json"
    traced_path.write_text(json.dumps(traced_events))
    traced = child(
        runtime,
        ["latency", "maas_core.functions.api.app", str(traced_path), calls, repeats],
        {**env, **TRACED_ENV},
        logs / "latency-traced.log",
    )
    tf_events = {f"tensorflow x{n}": predict_event(models.INT8, digits(n)) for n in (1, 32)}
    tf_path = logs / "latency-tf-events.json"
    tf_path.write_text(json.dumps(tf_events))
    tf = next(v for v in variants if v.key == "tensorflow")
    tf_env = tf.runtime.environment(tf.spec, s3_env)
    theirs = child(tf.runtime, ["latency", "app", str(tf_path), calls, repeats], tf_env, logs / "latency-tf.log")
    return {"runtime": runtime.label, **ours, **traced, **theirs}


# bench/child.py's compression or ort-settings on {label: model file}, on the function's runtime: _time_files.
TimeFiles = Callable[[str, dict[str, str]], dict[str, Any]]


def _compression(job: models.Job, time_files: TimeFiles) -> dict[str, Any]:
    candidates = job.manifest.compression["candidates"]
    files = {c["method"]: str(job.model_dir / c["file"]) for c in candidates if c.get("file")}
    latency = time_files("compression", files)
    table = {}
    for c in candidates:
        path = job.model_dir / str(c.get("file") or "")
        timed = {"latency": latency.get(c["method"]), "batch_latency": latency.get(f"{c['method']} x{TYPICAL_BATCH}")}
        table[c["method"]] = {
            "method": c["method"],
            "size_bytes": path.stat().st_size if path.is_file() else None,
            "gzip_bytes": c.get("gzip_bytes"),
            "accuracy": c.get("accuracy"),
            "accepted": c.get("accepted"),
            "reason": c.get("reason"),
            "latency_ms_at_training": c.get("latency_ms"),
            "batch_latency_ms_at_training": c.get("batch_latency_ms"),
            "usd_per_million_at_training": c.get("usd_per_million"),
            **{k: v for k, v in timed.items() if v is not None},
        }
    compression = job.manifest.compression
    return {
        "published_by_the_job": compression["method"],
        "objective": compression.get("objective", "size"),  # a manifest from before the objective: the size rule
        "typical_batch_size": TYPICAL_BATCH,
        "eval_rows": compression.get("eval_rows"),
        "max_accuracy_drop_points": compression.get("max_accuracy_drop_points"),
        "candidates": table,  # by method: a round's figures merge into the same candidate's
    }


def _ort_settings(job: models.Job, time_files: TimeFiles) -> dict[str, Any]:
    """The served candidate (the job's model.onnx) and the fp32 export under the served onnxruntime settings
    and each setting changed alone (bench/child.py ort-settings)."""
    files = {"served": str(job.model_dir / "model.onnx"), "fp32": str(models.candidate_file(job, "fp32"))}
    measured = time_files("ort-settings", files)
    served = job.manifest.compression["method"]
    return {"models": {"served": f"the served candidate ({served})", "fp32": "fp32"}, **measured}


def _time_files(
    what: str,
    files: dict[str, str],
    args: argparse.Namespace,
    runtime: Runtime,
    api_spec: FunctionSpec,
    s3_env: dict[str, str],
    logs: Path,
) -> dict[str, Any]:
    """``bench/child.py WHAT`` on {label: model file}, at 1 row and at TYPICAL_BATCH rows of digits, on the
    function's runtime and environment."""
    files_path = logs / f"{what}-files.json"
    files_path.write_text(json.dumps(files))
    rows = batch.write_rows(logs / f"{what}-rows.npy", TYPICAL_BATCH)
    env = _function_env(runtime, api_spec, s3_env, logs / f"{what}-tmp")
    repeats = 3 * args.repeats  # a run is 300 calls of 0.01-0.1 ms: more of them, spread further, cost little
    command = [what, str(files_path), str(rows), str(args.calls), str(repeats)]
    return child(runtime, command, env, logs / f"{what}.log")


def _load_plan(tabular: models.Job) -> list[dict[str, Any]]:
    from sklearn.datasets import load_breast_cancer

    row = load_breast_cancer().data[0].astype(float).tolist()
    return [
        {"name": models.INT8, "path": f"/models/{models.INT8}/predict", "body": {"instances": digits(1)}},
        {"name": models.TABULAR, "path": f"/models/{models.TABULAR}/predict", "body": {"instances": [row]}},
    ]


def _finish(results: dict[str, Any], sections: Sections, out: Path, args: argparse.Namespace, started: float) -> int:
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["failed_sections"] = sections.failed
    if args.previous is not None:
        results["rerun_check"] = rerun_check(args.previous, results)
    write_json(out / "out" / "runs.json", results)  # every run of every figure: git-ignored, for a closer look
    return _render(results, out, args)


# The figures of README's summary table and of the goals.
HEADLINE = (
    *(f"cold_start/{v}/{k}" for v in ("ours_int8", "ours_fp32", "tensorflow") for k in ("cold_s", "peak_rss_mib")),
    *(f"latency/{m} x{n}/handler/p50_ms" for m in ("int8", "fp32", "tensorflow") for n in (1, 32)),
    "latency/int8 x1/bare/p50_ms",
    "batch/rows_per_s",
    "batch/bare/best_rows_per_s",
    "batch/peak_rss_mib",
)
# What must match for two runs' figures to be comparable (the rest only names files or the README).
COMPARABLE = ("rounds", "cold_runs", "calls", "repeats", "batch_mib", "batch_runs", "venv", "no_load_test", "users")


def rerun_check(previous: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """This run's medians against the spread of the results.json it replaces, when both ran the same way."""
    was, now = previous.get("settings") or {}, current.get("settings") or {}
    about = {"previous_started_at": previous.get("started_at"), "previous_command": previous.get("command")}
    differ = [k for k in COMPARABLE if was.get(k) != now.get(k)]
    if differ:
        return {**about, "skipped": f"the previous run had other settings ({', '.join(differ)})"}
    check = {**about, **compare(previous, current)}
    compared = {name for name, _ in figures(current)} & {name for name, stat in figures(previous) if stat.n > 1}
    headline = [name for name in HEADLINE if name in compared]
    missed = [o["figure"] for o in check["outside"] if o["figure"] in headline]
    check["headline"] = {"checked": len(headline), "inside": len(headline) - len(missed), "outside": missed}
    before, now = (lookup(r, "machine_speed", "python_loop_ms") for r in (previous, current))
    if before and now:
        check["machine_speed"] = {
            "before": before["median"],
            "now": now["median"],
            "change_pct": 100 * (now["median"] - before["median"]) / before["median"],
        }
    return check


def _render(results: dict[str, Any], out: Path, args: argparse.Namespace) -> int:
    """Goals, results.json (the figures without their runs), results.md, the plot and README's table."""
    from bench import goals, plot, report

    results["goals"] = goals.goals(results)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", summary(results))
    (out / "results.md").write_text(report.markdown(results))
    plot.draw(results, out / "results.png")
    if not args.no_readme and out.resolve() == BENCH.resolve():
        report.update_readme(ROOT / "README.md", results)
    say(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'} ({results['wall_s']:.0f} s run)")
    for goal in results["goals"]:
        say(f"   {'met ' if goal['met'] else 'MISS'} {goal['goal']}: {goal['measured']}")
    check = results.get("rerun_check") or {}
    if "checked" in check:
        say(f"rerun check: {check['inside']} of {check['checked']} medians within the earlier runs' min-max")
        head = check["headline"]
        say(f"   the summary table's and goals' figures: {head['inside']} of {head['checked']}")
    if results["failed_sections"]:
        say(f"failed parts: {', '.join(results['failed_sections'])} (their errors are in results.json)")
        return 1
    return 0
