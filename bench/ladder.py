"""`make bench-large` / `python -m bench.ladder`: the size ladder and the transformer serving figures.

Apart from `make bench`: exporting the 400 MB model through TensorFlow takes minutes (cached after
the first run) and each of its cold starts tens of seconds, which would push `make bench` past 15
minutes. The models are bench/ladder_models.py's untrained transformer encoders of about 1, 10, 100
and 400 MB fp32 and their int8 forms, published to the embedded S3 with the registry's code.

The functions run as Lambda runs them: the ``sam build`` package on python3.12 (``--venv``: this
project's virtualenv with src/ instead, where no python3.12 is installed).

For each model, ``--runs`` times (interleaved over the models, so a busy moment is shared):
- cold start: spawn -> first 200 through the Lambda RIE (ApiFunction's spec from template.yaml, an
  empty /tmp and OPTIMIZED_MODEL_DIR per run), one 128-token text; the runtime process's peak RSS;
  twice: the model loaded by that request, and preloaded (``PRELOAD_MODELS`` naming it: its download
  starts during INIT, overlapping the handler's imports);
- download alone: the same object from the same S3 into a file, by the registry's download path
  (``Registry.download_model``: ranged parallel GETs hashed as they arrive) and by one streamed GET;
- session build alone: ``model_cache.build_session`` on the local file in a fresh process.
Then warm p50/p99 of a 128-token request at batch 1 and 8 through the handler and bare
``session.run`` on the same session, for the ~110M-parameter model fp32 and int8 (one warm container
each). Writes bench/results-large.{json,md,png}; raw runs go to the git-ignored .maas/bench-large/out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import coldstart, ladder_models
from bench.common import BENCH, ROOT, Runtime, child, predict_event, say, step, write_json
from bench.ladder_models import BASE, FORMS, RUNGS
from bench.stats import MIB, Stat

WORK = ladder_models.CACHE
SERVING_BATCHES = (1, 8)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ladder", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cold starts, downloads and builds per model")
    parser.add_argument("--rungs", default=",".join(r.name for r in RUNGS), help="which models, comma-separated")
    parser.add_argument("--calls", type=int, default=10, help="warm calls per latency run (after 10 warm-up calls)")
    parser.add_argument("--repeats", type=int, default=3, help="latency runs per figure")
    parser.add_argument("--no-serving", action="store_true", help="skip the warm latency of the base model")
    parser.add_argument(
        "--serving-rung", default=BASE, help=f"the model whose warm latency is measured (default {BASE})"
    )
    parser.add_argument("--no-small", action="store_true", help="skip training and measuring the small transformer")
    parser.add_argument("--venv", action="store_true", help="run the functions on the venv, not the sam build package")
    parser.add_argument("--out", default=str(BENCH), help="folder for results-large.{json,md,png}")
    parser.add_argument("--render-only", action="store_true", help="measure nothing: render results-large.json")
    args = parser.parse_args(argv)
    known = {r.name for r in RUNGS}
    args.rungs = [r for r in args.rungs.split(",") if r]
    if not set(args.rungs) <= known:
        parser.error(f"--rungs takes {', '.join(sorted(known))}; got {', '.join(args.rungs)}")
    if min(args.runs, args.calls, args.repeats) < 1:
        parser.error("--runs, --calls and --repeats take a whole number of at least 1")
    return args


def texts(count: int) -> list[str]:
    """``count`` different texts of at least 128 WordPiece ids (the tokenizer cuts them to 128)."""
    from training.text_data import generate_reviews

    reviews = [t for t, _ in generate_reviews(rows=40 * count)]
    return [" ".join(reviews[40 * i : 40 * (i + 1)]) for i in range(count)]


def _model_name(rung: str, form: str) -> str:
    return f"ladder-{rung}-{form}"


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _one_get(client: Any, bucket: str, key: str, target: Path, sha256: str) -> None:
    """The object in one streamed GET, hashed as it is written (moto copies the whole object per ranged
    GET, so locally this is the download without that copy per part)."""
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    with target.open("wb") as sink:
        while chunk := body.read(8 * MIB):
            digest.update(chunk)
            sink.write(chunk)
    if digest.hexdigest() != sha256:
        raise RuntimeError(f"{key}: the single GET's sha256 differs from the manifest's")


class Ladder:
    """The published models and the runs of each: cold start, download alone, build alone."""

    def __init__(self, s3: Any, runtime: Runtime, spec: Any, bucket: str, logs: Path) -> None:
        from maas_core.shared.registry import Registry

        self.client = s3.client()
        self.s3_env = s3.client_env()
        self.registry = Registry(bucket, self.client)
        self.runtime, self.spec, self.bucket, self.logs = runtime, spec, bucket, logs
        self.models: dict[str, dict[str, Any]] = {}
        self.split_dir = (
            logs / "split"
        )  # the split forms the build alone loads; under the run's logs, removed with them

    def publish(self, rung: str, folder: Path) -> None:
        """Both forms of a rung, as the training job publishes them: split (weights in model.onnx.data)
        from ``training.weights.SPLIT_THRESHOLD_BYTES`` on; the build alone loads the form the registry holds."""
        from maas_core.shared.layout import data_key, model_key
        from training.weights import publish_model_file, save_split

        for form in FORMS:
            path, _ = ladder_models.files(folder, form)
            name = _model_name(rung, form)
            manifest = publish_model_file(self.registry, name, path, ladder_models.draft_of(folder, form))
            keys = [(model_key(name, manifest.version), manifest.artifact.sha256)]
            built_from = path
            if manifest.artifact.external_data is not None:
                keys.append((data_key(name, manifest.version), manifest.artifact.external_data.sha256))
                split = self.split_dir / f"{rung}-{form}"
                split.mkdir(parents=True, exist_ok=True)
                built_from = save_split(path, split)
            self.models[f"{rung}/{form}"] = {
                "rung": rung,
                "form": form,
                "name": name,
                "manifest": manifest,
                "built_from": built_from,
                "keys": keys,
                "runs": [],
            }

    def run_once(self, key: str, event: dict[str, Any]) -> None:
        model = self.models[key]
        log = self.logs / f"cold-{key.replace('/', '-')}.log"
        cold = coldstart.one_run(self.spec, self.runtime, self.s3_env, event, log, warm=0)
        preloaded_env = {**self.s3_env, "PRELOAD_MODELS": model["name"]}
        preloaded = coldstart.one_run(self.spec, self.runtime, preloaded_env, event, log, warm=0)
        with tempfile.TemporaryDirectory(prefix="maas-bench-ladder-") as tmp:
            target = Path(tmp) / "model.onnx"
            manifest = model["manifest"]
            ranged = _timed(lambda: self.registry.download_model(model["name"], manifest.version, manifest, target))
            for path in Path(tmp).iterdir():
                path.unlink()
            single = _timed(
                lambda: [
                    _one_get(self.client, self.bucket, key, Path(tmp) / f"{i}", sha)
                    for i, (key, sha) in enumerate(model["keys"])
                ]
            )
        env = self.runtime.environment(self.spec, self.s3_env)
        log = self.logs / f"build-{key.replace('/', '-')}.log"
        built = child(self.runtime, ["build", str(model["built_from"])], env, log, timeout=1800)
        model["runs"].append(
            {
                "cold_s": cold["cold_s"],
                "peak_rss_mib": cold["peak_rss_mib"],
                "cold_preloaded_s": preloaded["cold_s"],
                "peak_rss_preloaded_mib": preloaded["peak_rss_mib"],
                "download_ranged_s": ranged,
                "download_one_get_s": single,
                "build_s": built["build_s"],
                "build_peak_rss_over_baseline_mib": built["peak_rss_over_baseline_mib"],
            }
        )

    def figures(self) -> dict[str, Any]:
        return {key: figures_of(model) for key, model in self.models.items()}


def figures_of(model: dict[str, Any]) -> dict[str, Any]:
    """One model's runs as figures (median, min, max) and the ratios of its cold start to its parts."""
    runs = model["runs"]
    names = (
        "cold_s",
        "peak_rss_mib",
        "cold_preloaded_s",
        "peak_rss_preloaded_mib",
        "download_ranged_s",
        "download_one_get_s",
        "build_s",
        "build_peak_rss_over_baseline_mib",
    )
    out: dict[str, Any] = {
        "rung": model["rung"],
        "form": model["form"],
        "size_bytes": model["manifest"].artifact.total_bytes,
        "split": model["manifest"].artifact.external_data is not None,
        "runs": runs,
        **{name: Stat.of(r[name] for r in runs).to_dict() for name in names},
    }
    for way in ("ranged", "one_get"):
        # Per run, then the median: the parts and the cold start of a run share its moment on the machine.
        for cold in ("cold", "cold_preloaded"):
            out[f"{cold}_over_parts_{way}"] = Stat.of(
                r[f"{cold}_s"] / (r[f"download_{way}_s"] + r["build_s"]) for r in runs
            ).to_dict()
    return out


def serving(
    runtime: Runtime, spec: Any, s3_env: dict[str, str], calls: int, repeats: int, logs: Path, rung: str = BASE
) -> dict[str, Any]:
    """Warm latency of the ``rung`` model (the base one), fp32 and int8, each in its own warm handler
    process (both at once would not fit ApiFunction's model cache: evictions would be timed, not requests)."""
    out: dict[str, Any] = {"calls": calls, "repeats": repeats, "tokens": ladder_models.SEQUENCE_LENGTH}
    for form in FORMS:
        name = _model_name(rung, form)
        events = {f"{form} x{n}": predict_event(name, texts(n)) for n in SERVING_BATCHES}
        events_path = logs / f"serving-{form}-events.json"
        events_path.write_text(json.dumps(events))
        env = runtime.environment(spec, {**s3_env, "OPTIMIZED_MODEL_DIR": str(logs / f"serving-{form}-tmp")})
        module = "maas_core.functions.api.app"
        args = ["latency", module, str(events_path), str(calls), str(repeats)]
        out.update(child(runtime, args, env, logs / f"serving-{form}.log", timeout=1800))
    return out


SMALL_HP: dict[str, Any] = {"family": "transformer", "model_name": "reviews-transformer", "preset": "small"}


def small_compression(
    runtime: Runtime, spec: Any, s3_env: dict[str, str], calls: int, repeats: int, logs: Path
) -> dict[str, Any]:
    """The small transformer trained by the real job (cached, as ``make bench`` caches its models), and each
    compression candidate the job built: size and held-out accuracy from its manifest, batch-1 latency of a
    128-token text (cut to the model's sequence length) by bench/child.py's ``compression``, one thread."""
    import numpy as np

    from bench import models
    from bench.common import child
    from maas_core.shared.text import WordTokenizer

    job = models.train(SMALL_HP)
    compression = job.manifest.compression
    files = {c["method"]: str(job.model_dir / c["file"]) for c in compression["candidates"] if c.get("file")}
    files_path = logs / "small-files.json"
    files_path.write_text(json.dumps(files))
    tokenizer = WordTokenizer.from_manifest(job.manifest.inputs[0].tokenizer or {})
    ids = logs / "small-ids.npy"
    np.save(ids, tokenizer.encode(texts(1)))
    env = runtime.environment(spec, {**s3_env, "OPTIMIZED_MODEL_DIR": str(logs / "small-tmp")})
    latency = child(
        runtime, ["compression", str(files_path), str(ids), str(calls), str(repeats)], env, logs / "small.log"
    )
    return {
        "hyperparameters": SMALL_HP,
        "trained_now_s": job.trained_s,
        "sequence_length": tokenizer.sequence_length,
        "eval_rows": compression.get("eval_rows"),
        "published_by_the_job": compression["method"],
        "candidates": {
            c["method"]: {
                "size_bytes": c.get("size_bytes"),
                "accuracy": c.get("accuracy"),
                "accepted": c.get("accepted"),
                "reason": c.get("reason"),
                **({"latency": latency[c["method"]]} if c["method"] in latency else {}),
            }
            for c in compression["candidates"]
        },
    }


def function_runtime(venv: bool) -> Runtime:
    """The sam build package on python3.12, as Lambda runs it; the venv with src/ when asked or without one."""
    from bench import size
    from bench.common import venv_runtime

    py312 = None if venv else size.python312()
    if py312 is None:
        return venv_runtime()
    with step("sam build (cached): the functions as Lambda runs them"):
        package = size.sam_build(py312, WORK / "sam-build.log")
    return size.artifact_runtime(py312, package)


def main(argv: list[str] | None = None) -> int:
    from bench import ladder_report

    args = parse_args(argv)
    out = Path(args.out)
    if args.render_only:
        return ladder_report.render(json.loads((out / "results-large.json").read_text()), out)
    started = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bench.run import machine
    from maas.embedded_s3 import EmbeddedS3
    from maas.stack import load_template

    rungs = [r for r in RUNGS if r.name in args.rungs]
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.ladder", *(sys.argv[1:] if argv is None else argv)]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "render_only")},
        "machine": machine(),
        "rungs": {r.name: {**r.__dict__, "parameters": r.parameters(), "trained": False} for r in rungs},
    }
    with step("models: untrained transformer encoders, exported and quantised (cached)"):
        folders = {r.name: ladder_models.exported(r) for r in rungs}
    template = load_template(str(ROOT / "template.yaml"))
    spec = template.function("ApiFunction")
    runtime = function_runtime(args.venv)
    results["machine"]["function_runtime"] = runtime.label
    results["function"] = {"memory_mb": spec.memory_mb, "environment": spec.environment}
    logs = WORK / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    state = WORK / "state"
    shutil.rmtree(state, ignore_errors=True)  # a fresh registry each run; its objects are the models
    try:
        with EmbeddedS3(state, template.bucket_names()) as s3:
            ladder = Ladder(s3, runtime, spec, spec.environment["MODEL_BUCKET"], logs)
            for name, folder in folders.items():
                ladder.publish(name, folder)
            event = {key: predict_event(m["name"], texts(1)) for key, m in ladder.models.items()}
            for i in range(args.runs):
                with step(f"size ladder, run {i + 1}/{args.runs}: cold start, download alone, build alone"):
                    for key in ladder.models:
                        ladder.run_once(key, event[key])
                        r = ladder.models[key]["runs"][-1]
                        say(
                            f"   {key}: cold {r['cold_s']:.2f} s, {r['peak_rss_mib']:.0f} MiB; preloaded "
                            f"{r['cold_preloaded_s']:.2f} s, {r['peak_rss_preloaded_mib']:.0f} MiB; download "
                            f"{r['download_ranged_s']:.2f} s ranged, {r['download_one_get_s']:.2f} s one GET; "
                            f"build {r['build_s']:.2f} s"
                        )
            results["ladder"] = ladder.figures()
            if not args.no_serving and args.serving_rung in folders:
                with step(f"serving: {args.serving_rung} fp32 and int8, 128 tokens, batch 1 and 8, handler vs bare"):
                    results["serving"] = serving(
                        runtime, spec, s3.client_env(), args.calls, args.repeats, logs, rung=args.serving_rung
                    )
            if not args.no_small:
                with step("the small transformer, trained by the job (cached): fp32 vs int8 vs fp16"):
                    try:
                        results["small_compression"] = small_compression(
                            runtime, spec, s3.client_env(), 10 * args.calls, args.repeats, logs
                        )
                    except Exception as exc:  # the ladder's figures stand without it; the error is reported
                        results["small_compression"] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    finally:
        shutil.rmtree(state, ignore_errors=True)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    write_json(WORK / "out" / "runs.json", results)
    return ladder_report.render(results, out)


if __name__ == "__main__":
    raise SystemExit(main())
