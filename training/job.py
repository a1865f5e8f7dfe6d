"""The training job: SageMaker contract in, compressed ONNX model and manifest out, then publish.

    python -m training.job            # inside a SageMaker container, or with SM_ROOT set locally

Reads the ``train`` channel (and ``validation`` if given, else holds out a stratified 20%),
trains the Keras CNN, exports ONNX (checked and compared with Keras), quantises to int8 behind an
accuracy gate, writes everything under the model dir and publishes the selected model to the S3
registry when a bucket is configured. Any failure writes ``<root>/output/failure`` and exits 1.
"""

from __future__ import annotations

import os

# Before anything imports Keras or TensorFlow: quiet logs, and the backend ONNX export needs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.registry import check_name
from training.data import Dataset, load_channel, split_holdout
from training.sagemaker_env import DEFAULT_ROOT, TrainingEnv, read_env, write_failure

DEFAULTS: dict[str, Any] = {
    "epochs": 15,
    "batch_size": 32,
    "learning_rate": 2e-3,
    "seed": 42,
    "model_name": "digits",
    "max_accuracy_drop": 0.5,
    "holdout_fraction": 0.2,
}
HYPERPARAMETERS = ("epochs", "batch_size", "learning_rate", "seed", "max_accuracy_drop", "holdout_fraction")

# For CreateTrainingJob's AlgorithmSpecification.MetricDefinitions: scraped from the epoch lines.
METRIC_DEFINITIONS = [
    {"Name": f"train:{key}", "Regex": rf"epoch=\d+ .*\b{key}=([0-9.eE+-]+)"}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy")
]

ARTIFACTS = ("model.keras", "model.fp32.onnx", "model.int8.onnx", "model.onnx", "manifest.json")


class UsageError(ValueError):
    """Arguments or hyperparameters the job cannot use."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and sys.exit(2): fail like any other error
        raise UsageError(message)


@dataclass
class JobResult:
    model_dir: Path
    manifest: dict[str, Any]
    published: dict[str, Any] | None


def build_parser(env: TrainingEnv, environ: Mapping[str, str] = os.environ) -> argparse.ArgumentParser:
    hp = env.hyperparameters
    parser = _Parser(prog="python -m training.job", description=__doc__.splitlines()[0])
    parser.add_argument("--sm-root", default=str(env.root), help="the /opt/ml root (default: SM_ROOT or /opt/ml)")
    parser.add_argument("--model-dir", default=str(env.model_dir))
    parser.add_argument("--train", default=str(env.channels["train"]))
    parser.add_argument("--validation", default=str(env.channels.get("validation") or ""))
    parser.add_argument("--output-data-dir", default=str(env.output_data_dir))
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--model-name")
    parser.add_argument(
        "--max-accuracy-drop", type=float, help="int8 is published only within this many percentage points of fp32"
    )
    parser.add_argument("--holdout-fraction", type=float, help="held out of train when no validation channel")
    parser.add_argument(
        "--registry-bucket", help="publish to this S3 registry bucket (default: MAAS_MODEL_BUCKET; empty: don't)"
    )
    known = sorted([*DEFAULTS, "registry_bucket"])
    # SageMaker's framework estimators add sagemaker_* entries of their own.
    unknown = sorted(k for k in hp if k not in known and not k.startswith("sagemaker_"))
    if unknown:
        raise UsageError(f"unknown hyperparameters {unknown}; known: {known}")
    # String defaults go through each argument's type, so "10" from hyperparameters.json becomes 10.
    defaults = {**DEFAULTS, "registry_bucket": environ.get("MAAS_MODEL_BUCKET", "")}
    defaults.update({k: v for k, v in hp.items() if k in known})
    parser.set_defaults(**{k: str(v) for k, v in defaults.items()})
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    check_name(args.model_name)
    problems = [
        f"{name} must be {rule}, got {getattr(args, name)}"
        for name, rule, ok in (
            ("epochs", ">= 1", args.epochs >= 1),
            ("batch_size", ">= 1", args.batch_size >= 1),
            ("learning_rate", "> 0", args.learning_rate > 0),
            ("holdout_fraction", "between 0 and 1", 0 < args.holdout_fraction < 1),
            ("max_accuracy_drop", ">= 0 (percentage points)", args.max_accuracy_drop >= 0),
        )
        if not ok
    ]
    if problems:
        raise UsageError("; ".join(problems))


def _root_from(argv: list[str] | None) -> str | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--sm-root")
    return pre.parse_known_args(argv)[0].sm_root


def _datasets(args: argparse.Namespace) -> tuple[Dataset, Dataset, str]:
    train = load_channel(args.train, "train")
    if args.validation:
        held = load_channel(args.validation, "validation")
        if held.labels != train.labels or held.x.shape[1:] != train.x.shape[1:]:
            raise UsageError("the validation channel's labels or image shape differ from the train channel's")
        return train, held, "validation channel"
    train, held = split_holdout(train, args.holdout_fraction, args.seed)
    return train, held, f"stratified {args.holdout_fraction:.0%} hold-out of the train channel (seed {args.seed})"


def run(args: argparse.Namespace, env: TrainingEnv) -> JobResult:
    started = time.perf_counter()
    train, held, held_from = _datasets(args)
    print(f"data: {len(train)} training rows, {len(held)} held-out rows ({held_from}), {len(train.labels)} classes")

    # Imported only once the data is known good: Keras/TensorFlow take seconds to import.
    from training import compress, export, manifest, models

    models.set_seed(args.seed)
    model = models.build_digits_cnn(train.x.shape[1:], len(train.labels), learning_rate=args.learning_rate)
    print(f"model: {model.name}, {model.count_params():,} parameters, backend {models.keras_versions()}", flush=True)
    model.fit(
        train.x,
        train.y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_data=(held.x, held.y),
        callbacks=[models.MetricLines(args.epochs)],
        verbose=0,
    )
    train_seconds = time.perf_counter() - started

    model_dir = Path(args.model_dir)
    with tempfile.TemporaryDirectory(prefix="maas-train-") as tmp:
        work = Path(tmp)
        model.save(work / "model.keras")
        fp32_path = export.export_onnx(model, work / "model.fp32.onnx", opset=export.OPSET)
        parity = export.check_parity(model, fp32_path, held.x)
        print(f"export: {fp32_path.name} opset {export.OPSET}, max |onnx - keras| = {parity:.2e}", flush=True)
        gate = compress.compress_and_gate(
            fp32_path, work / "model.int8.onnx", held.x, held.y, max_accuracy_drop_points=args.max_accuracy_drop
        )
        for c in gate.candidates:
            print(
                f"candidate {c.method}: {c.size_bytes:,} bytes, accuracy {c.accuracy:.4f}, "
                f"{c.latency_ms:.3f} ms/request, {'ACCEPTED' if c.accepted else 'rejected'} ({c.reason})"
            )
        shutil.copyfile(work / gate.chosen.file, work / "model.onnx")
        body = manifest.build_manifest(
            onnx_path=work / "model.onnx",
            labels=train.labels,
            preprocessing={"client": models.CLIENT_PREPROCESSING, "in_graph": models.IN_GRAPH_PREPROCESSING},
            compression=gate.to_manifest(),
            metrics={
                "accuracy": gate.chosen.accuracy,
                "fp32_accuracy": gate.fp32.accuracy,
                "eval_rows": len(held),
                "eval_set": held_from,
                "parity_max_abs_diff": parity,
            },
            training_job={
                "id": env.job_name,
                "instance_type": env.instance_type,
                "duration_s": round(time.perf_counter() - started, 2),
                "train_s": round(train_seconds, 2),
                "train_rows": len(train),
                "hyperparameters": {k: getattr(args, k) for k in HYPERPARAMETERS},
            },
            framework=manifest.framework_versions(export.OPSET),
        )
        (work / "manifest.json").write_text(json.dumps(body, indent=2) + "\n")
        model_dir.mkdir(parents=True, exist_ok=True)
        for name in ARTIFACTS:
            shutil.copyfile(work / name, model_dir / name)
    print(f"artifacts: {', '.join(ARTIFACTS)} in {model_dir}")

    published = None
    if args.registry_bucket:
        from shared.registry import Registry

        model_bytes = (model_dir / "model.onnx").read_bytes()
        published = Registry(args.registry_bucket).publish(args.model_name, model_bytes, body)
        print(
            f"published: s3://{args.registry_bucket}/models/{published['name']}/{published['version']}/ "
            f"name={published['name']} version={published['version']}",
            flush=True,
        )
        output_dir = Path(args.output_data_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "published.json").write_text(json.dumps(published, indent=2) + "\n")
    else:
        print("published: no (no registry bucket: set MAAS_MODEL_BUCKET or --registry-bucket)")
    return JobResult(model_dir=model_dir, manifest=body, published=published)


def main(argv: list[str] | None = None, *, root: str | Path | None = None) -> int:
    """Run the job; returns the exit status (0, or 1 after writing the failure file)."""
    base = Path(root or _root_from(argv) or os.environ.get("SM_ROOT") or DEFAULT_ROOT)
    try:
        env = read_env(base)
        args = build_parser(env).parse_args(argv)
        check_arguments(args)  # fail before training, not after
        run(args, env)
    except Exception as exc:
        write_failure(base, exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
