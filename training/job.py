"""The training job: SageMaker contract in, compressed ONNX model and manifest out, then publish.

    python -m training.job            # inside a SageMaker container, or with SM_ROOT set locally

Reads the ``train`` channel (and ``validation`` if given, else holds out a stratified 20%),
trains the model of the ``family`` hyperparameter (one module each in ``training.families``: the
image CNN, tabular MLP, logistic and linear regression on raw features standardised inside the graph,
and the text models on ids from ``shared.text``'s tokenizer, whose vocabulary goes in the manifest so
the server tokenises), exports ONNX (checked and compared with Keras),
builds the compression candidates asked for (``compression``: int8 dynamic/static, fp16, pruned,
distilled; see ``training.compress``), measures them all on the held-out rows, publishes the
best by ``objective`` (cost, latency or size) of those within ``max_accuracy_drop`` points of fp32
accuracy (for regression: RMSE at most ``max_rmse_increase_pct`` percent above fp32's), writes
everything under the model dir and publishes the selected model to the S3 registry when a bucket is
configured. Any failure writes ``<root>/output/failure`` and exits 1 (a failed compression candidate
is only recorded as rejected).
"""

from __future__ import annotations

import os

# Before anything imports Keras or TensorFlow: quiet logs, and the backend ONNX export needs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import argparse
import functools
import json
import math
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maas_core.shared.layout import check_name, model_key
from maas_core.shared.manifest import Draft, Manifest, graph_tensors
from training.compress import (
    DEFAULT_COMPRESSION,
    DEFAULT_DISTILLATION_TEMPERATURE,
    DEFAULT_MAX_ACCURACY_DROP_POINTS,
    DEFAULT_MAX_RMSE_INCREASE_PCT,
    DISTILLED,
    PRUNED,
    parse_menu,
)
from training.cost import DEFAULT_MEMORY_MB, DEFAULT_OBJECTIVE, OBJECTIVES, TYPICAL_BATCH
from training.data import DEFAULT_LABEL_COLUMN, DEFAULT_TEXT_COLUMN, Dataset, load_channel, split_holdout
from training.families import DEFAULT_FAMILY, FAMILIES, TEXT_INPUT, BuildInputs, Family, family
from training.sagemaker_env import DEFAULT_ROOT, TrainingEnv, read_env, write_failure

DEFAULTS: dict[str, Any] = {
    "epochs": 15,
    "batch_size": 32,
    "learning_rate": 2e-3,
    "seed": 42,
    "model_name": "",  # empty: the family's default_model_name
    "max_accuracy_drop": DEFAULT_MAX_ACCURACY_DROP_POINTS,
    "objective": DEFAULT_OBJECTIVE,
    "holdout_fraction": 0.2,
    "compression": DEFAULT_COMPRESSION,
    "calibration_rows": 200,
    "pruning_sparsity": 0.5,
    "pruning_epochs": 4,
    "distillation_epochs": 0,
    "distillation_temperature": DEFAULT_DISTILLATION_TEMPERATURE,
    "family": DEFAULT_FAMILY,
    "label_column": DEFAULT_LABEL_COLUMN,
    "max_rmse_increase_pct": DEFAULT_MAX_RMSE_INCREASE_PCT,
    "text_column": DEFAULT_TEXT_COLUMN,
    "sequence_length": 0,  # 0 here and below: the family's (text: 24 and 5000; transformer: its preset's)
    "vocabulary_size": 0,
    "preset": "",  # transformer: tiny, small or base (empty: small); each size below overrides it
    "layers": 0,
    "hidden_size": 0,
    "heads": 0,
    "feed_forward_size": 0,
    # The serving functions' MemorySize and EphemeralStorage (MB): a model that needs more is refused at
    # publish (422 model_too_large, the job fails naming its needs and these); 0: not checked. The memory
    # also prices the candidates (objective cost); 0 prices them at template.yaml's default MemorySize.
    "serving_memory_mb": 0,
    "serving_storage_mb": 0,
}
# Candidates that retrain a Keras model: only for the families whose students they build.
RETRAINED_COMPRESSION = (PRUNED, DISTILLED)
HYPERPARAMETERS = (
    "family",
    "label_column",
    "epochs",
    "batch_size",
    "learning_rate",
    "seed",
    "max_accuracy_drop",
    "objective",
    "holdout_fraction",
    "compression",
    "calibration_rows",
    "pruning_sparsity",
    "pruning_epochs",
    "distillation_epochs",
    "distillation_temperature",
    "max_rmse_increase_pct",
    "text_column",
    "sequence_length",
    "vocabulary_size",
    "preset",
    "layers",
    "hidden_size",
    "heads",
    "feed_forward_size",
)

# For CreateTrainingJob's AlgorithmSpecification.MetricDefinitions: scraped from the epoch lines.
METRIC_DEFINITIONS = [
    {"Name": f"train:{key}", "Regex": rf"epoch=\d+ .*\b{key}=([0-9.eE+-]+)"}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy")
]

# Always in the model dir; each compression candidate that was built adds its own file beside them.
ARTIFACTS = ("model.keras", "model.fp32.onnx", "model.onnx", "manifest.json")


class UsageError(ValueError):
    """Arguments or hyperparameters the job cannot use."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and sys.exit(2): fail like any other error
        raise UsageError(message)


@dataclass
class JobResult:
    model_dir: Path
    manifest: Draft | None  # None on a worker that is not the chief: it trains only
    published: Manifest | None


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
    parser.add_argument("--model-name", help="registry name (default: the family's example, e.g. digits)")
    parser.add_argument("--family", help=f"model family: {', '.join(FAMILIES)} (default {DEFAULT_FAMILY})")
    parser.add_argument("--label-column", help="the CSV column / JSON Lines key that holds the label")
    parser.add_argument("--text-column", help="text families: the CSV column / JSON Lines key that holds the text")
    parser.add_argument(
        "--sequence-length", type=int, help="text families: words (transformer: WordPiece ids) per text the model reads"
    )
    parser.add_argument(
        "--vocabulary-size",
        type=int,
        help="text families: most frequent training words (transformer: WordPiece entries) kept, specials included",
    )
    parser.add_argument("--preset", help="transformer: its sizes, tiny, small or base (default small)")
    parser.add_argument("--layers", type=int, help="transformer: encoder blocks (0: the preset's)")
    parser.add_argument("--hidden-size", type=int, help="transformer: width of embeddings and blocks (0: the preset's)")
    parser.add_argument(
        "--heads", type=int, help="transformer: attention heads, dividing hidden-size (0: the preset's)"
    )
    parser.add_argument("--feed-forward-size", type=int, help="transformer: feed-forward width (0: the preset's)")
    parser.add_argument(
        "--max-rmse-increase-pct",
        type=float,
        help="regression: a candidate is published only if its RMSE is at most this many percent above fp32's",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        help="a candidate is published only within this many percentage points of fp32",
    )
    parser.add_argument(
        "--objective",
        help=f"of the candidates within the gate, publish the {', '.join(OBJECTIVES)} one: cost (default): the lowest "
        "expected Lambda cost per request at the serving memory; latency: the fastest at batch 1; size: the smallest "
        "file (candidates within 10%% of the best cost or latency count as equal: the smallest of them wins)",
    )
    parser.add_argument(
        "--compression",
        help="candidates besides fp32: 'all' or a comma list of int8-dynamic, int8-static, fp16, pruned, distilled",
    )
    parser.add_argument("--calibration-rows", type=int, help="training rows sampled to calibrate int8-static")
    parser.add_argument("--pruning-sparsity", type=float, help="fraction of Conv/Dense weights the pruned model zeroes")
    parser.add_argument("--pruning-epochs", type=int, help="fine-tuning epochs while pruning the trained model")
    parser.add_argument(
        "--distillation-epochs", type=int, help="epochs to train the distilled student (0: as --epochs)"
    )
    parser.add_argument("--distillation-temperature", type=float, help="softening temperature of the teacher's outputs")
    parser.add_argument("--holdout-fraction", type=float, help="held out of train when no validation channel")
    parser.add_argument(
        "--registry-bucket", help="publish to this S3 registry bucket (default: MAAS_MODEL_BUCKET; empty: don't)"
    )
    parser.add_argument(
        "--serving-memory-mb", type=int, help="the serving functions' memory: a model needing more is not published"
    )
    parser.add_argument(
        "--serving-storage-mb", type=int, help="the serving functions' ephemeral storage, checked the same way"
    )
    known = sorted([*DEFAULTS, "registry_bucket"])
    # SageMaker's framework estimators add sagemaker_* entries of their own.
    unknown = sorted(k for k in hp if k not in known and not k.startswith("sagemaker_"))
    if unknown:
        raise UsageError(f"unknown hyperparameters {unknown}; known: {known}")
    # String defaults go through each argument's type, so "10" from hyperparameters.json becomes 10.
    # An empty model name becomes the family's default name in check_arguments; the same for a
    # learning rate of NaN: the family's own default.
    defaults = {
        **DEFAULTS,
        "learning_rate": "nan",
        "registry_bucket": environ.get("MAAS_MODEL_BUCKET", ""),
    }
    defaults.update({k: v for k, v in hp.items() if k in known})
    parser.set_defaults(**{k: str(v) for k, v in defaults.items()})
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    try:
        chosen = family(args.family)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    args.model_name = args.model_name or chosen.default_model_name
    if math.isnan(args.learning_rate):
        args.learning_rate = chosen.learning_rate
    check_name(args.model_name)
    try:
        for key, value in chosen.settings(vars(args)).items():
            setattr(args, key, value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    problems = [
        f"{name} must be {rule}, got {getattr(args, name)}"
        for name, rule, ok in (
            ("epochs", ">= 1", args.epochs >= 1),
            ("batch_size", ">= 1", args.batch_size >= 1),
            ("learning_rate", "> 0", args.learning_rate > 0),
            ("holdout_fraction", "between 0 and 1", 0 < args.holdout_fraction < 1),
            ("max_accuracy_drop", ">= 0 (percentage points)", args.max_accuracy_drop >= 0),
            ("objective", f"one of {', '.join(OBJECTIVES)}", args.objective in OBJECTIVES),
            ("calibration_rows", ">= 1", args.calibration_rows >= 1),
            ("pruning_sparsity", "between 0 and 1", 0 < args.pruning_sparsity < 1),
            ("pruning_epochs", ">= 1", args.pruning_epochs >= 1),
            ("distillation_epochs", ">= 0", args.distillation_epochs >= 0),
            ("distillation_temperature", "> 0", args.distillation_temperature > 0),
            ("max_rmse_increase_pct", ">= 0 (percent)", args.max_rmse_increase_pct >= 0),
            ("label_column", "a column name", bool(args.label_column.strip())),
            ("text_column", "a column name", bool(args.text_column.strip())),
            ("sequence_length", ">= 1", not chosen.text or args.sequence_length >= 1),
            ("vocabulary_size", ">= 3", not chosen.text or args.vocabulary_size >= 3),
        )
        if not ok
    ]
    try:
        menu = parse_menu(args.compression)
        if not chosen.retrained_compression:
            retrained = [m for m in menu if m in RETRAINED_COMPRESSION]
            if retrained and str(args.compression).strip().lower() != "all":
                able = " and ".join(f.name for f in FAMILIES.values() if f.retrained_compression)
                problems.append(f"compression {retrained} is available for the {able} family only")
            menu = [m for m in menu if m not in RETRAINED_COMPRESSION]
        args.compression = ",".join(menu)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise UsageError("; ".join(problems))


def _root_from(argv: list[str] | None) -> str | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--sm-root")
    return pre.parse_known_args(argv)[0].sm_root


def _datasets(args: argparse.Namespace, chosen: Family) -> tuple[Dataset, Dataset, str]:
    options: dict[str, Any] = {"label_column": args.label_column, "task": chosen.task}
    if chosen.text:
        options["text_column"] = args.text_column
    train = load_channel(args.train, "train", **options)
    _check_rows(train, chosen)
    if args.validation:
        held = load_channel(args.validation, "validation", **options)
        if held.labels != train.labels or held.x.shape[1:] != train.x.shape[1:] or held.columns != train.columns:
            raise UsageError("the validation channel's labels, columns or row shape differ from the train channel's")
        return train, held, "validation channel"
    train, held = split_holdout(train, args.holdout_fraction, args.seed)
    how = "stratified " if chosen.classification else ""
    return train, held, f"{how}{args.holdout_fraction:.0%} hold-out of the train channel (seed {args.seed})"


def _check_rows(data: Dataset, chosen: Family) -> None:
    problem = chosen.rows_problem(chosen.name, data.x)
    if problem:
        raise UsageError(problem)
    if chosen.classification and len(data.labels) < 2:
        raise UsageError(f"a classifier needs at least 2 classes; the train channel has {data.labels}")


def run(args: argparse.Namespace, env: TrainingEnv) -> JobResult:
    started = time.perf_counter()
    chosen = family(args.family)
    train, held, held_from = _datasets(args, chosen)
    target = f"{len(train.labels)} classes" if chosen.classification else "regression target"
    print(f"data: {len(train)} training rows, {len(held)} held-out rows ({held_from}), {target}")

    # Imported only once the data is known good: Keras/TensorFlow take seconds to import.
    from training import export, manifest

    tokenizer, train, held = _tokenized(args, chosen, train, held)
    trained = _train(args, env, chosen, train, held, vocabulary_size=len(tokenizer.vocabulary) if tokenizer else 0)
    if trained is None:
        return JobResult(model_dir=Path(args.model_dir), manifest=None, published=None)
    model, workers = trained
    train_seconds = time.perf_counter() - started

    model_dir = Path(args.model_dir)
    with tempfile.TemporaryDirectory(prefix="maas-train-") as tmp:
        work = Path(tmp)
        model.save(work / "model.keras")
        fp32_path = export.export_onnx(
            model,
            work / "model.fp32.onnx",
            opset=export.OPSET,
            input_name=chosen.input_name,
            output_name=chosen.output_name,
            input_dtype=chosen.input_dtype,
        )
        parity = export.check_parity(model, fp32_path, held.x)
        print(f"export: {fp32_path.name} opset {export.OPSET}, max |onnx - keras| = {parity:.2e}", flush=True)
        gate = _compression_menu(args, chosen, model, train, held, fp32_path, parity, work)
        print(
            f"candidates, objective {gate.objective}: size, held-out metric, one-thread ms at batch 1/"
            f"{TYPICAL_BATCH}, Lambda $ per million requests",
            flush=True,
        )
        for c in gate.candidates:
            print(f"candidate {c.method}: {_candidate_line(c)}", flush=True)
        shutil.copyfile(work / gate.chosen.file, work / "model.onnx")
        if chosen.classification:
            scores = {"accuracy": gate.chosen.accuracy, "fp32_accuracy": gate.fp32.accuracy}
        else:
            scores = {
                "rmse": gate.chosen.rmse,
                "mae": gate.chosen.mae,
                "fp32_rmse": gate.fp32.rmse,
                "fp32_mae": gate.fp32.mae,
            }
        draft = manifest.build_manifest(
            onnx_path=work / "model.onnx",
            labels=train.labels if chosen.classification else None,
            input_columns=None if chosen.text else train.columns,
            text_input=(TEXT_INPUT, tokenizer.to_manifest()) if tokenizer else None,
            preprocessing=chosen.preprocessing(len(train), train.columns),
            compression=gate.to_manifest(),
            metrics={
                **scores,
                "eval_rows": len(held),
                "eval_set": held_from,
                "parity_max_abs_diff": parity,
            },
            training_job={
                "id": env.job_name,
                "instance_type": env.instance_type,
                "instance_count": workers,
                "duration_s": round(time.perf_counter() - started, 2),
                "train_s": round(train_seconds, 2),
                "train_rows": len(train),
                "hyperparameters": {k: getattr(args, k) for k in HYPERPARAMETERS},
            },
            framework=manifest.framework_versions(export.OPSET),
            task=chosen.task,
        )
        (work / "manifest.json").write_text(json.dumps(draft.to_json(), indent=2) + "\n")
        model_dir.mkdir(parents=True, exist_ok=True)
        artifacts = [*ARTIFACTS, *(c.file for c in gate.candidates if c.method != "fp32" and c.size_bytes)]
        for name in artifacts:
            shutil.copyfile(work / name, model_dir / name)
    print(f"artifacts: {', '.join(artifacts)} in {model_dir}")

    return JobResult(model_dir=model_dir, manifest=draft, published=_publish(args, model_dir, draft))


def _publish(args: argparse.Namespace, model_dir: Path, draft: Draft) -> Manifest | None:
    """The job's last step: one new version in the registry (none without a registry bucket)."""
    if not args.registry_bucket:
        print("published: no (no registry bucket: set MAAS_MODEL_BUCKET or --registry-bucket)")
        return None
    from maas_core.shared.registry import Registry
    from maas_core.shared.sizing import Limits
    from training.weights import publish_model_file

    # The job only adds a version (its role may write nothing else under models/, ARCHITECTURE.md):
    # an alias changes through a promote, with compare-and-swap and history. A large model goes split.
    registry = Registry(args.registry_bucket)
    model = model_dir / "model.onnx"
    # Refused (ModelTooLarge, the job's failure) when the serving functions could not hold it: at publish,
    # with its needs and their limits, not at its first request (ARCHITECTURE.md, Serving rules: sizing).
    limits = None
    if args.serving_memory_mb > 0 and args.serving_storage_mb > 0:
        limits = Limits(memory_mb=args.serving_memory_mb, storage_mb=args.serving_storage_mb)
    published = publish_model_file(registry, args.model_name, model, draft, alias_on_first_publish=None, limits=limits)
    print(
        f"published: s3://{args.registry_bucket}/{model_key(published.name, published.version)} "
        f"name={published.name} version={published.version}",
        flush=True,
    )
    output_dir = Path(args.output_data_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "published.json").write_text(json.dumps(published.to_json(), indent=2) + "\n")
    return published


def _tokenized(args: argparse.Namespace, chosen: Family, train: Dataset, held: Dataset) -> tuple[Any, Dataset, Dataset]:
    """A text family's tokenizer, learnt from the train rows, and both sets as its ids (others: as they are)."""
    if not chosen.text:
        return None, train, held
    from training.vocabulary import learn_tokenizer

    tokenizer = learn_tokenizer(
        chosen.tokenizer,
        train.x,
        max_tokens=args.vocabulary_size,
        sequence_length=args.sequence_length,
        graph_input=chosen.input_name,
    )
    # The tokenizer serving uses, run here: the model trains and is measured on the same ids.
    train, held = (Dataset(tokenizer.encode(d.x), d.y, d.labels, d.columns) for d in (train, held))
    size = f"{len(tokenizer.vocabulary)} entries, sequence length {args.sequence_length}"
    print(f"tokenizer: {chosen.tokenizer}, {size}", flush=True)
    return tokenizer, train, held


def _train(
    args: argparse.Namespace, env: TrainingEnv, chosen: Family, train: Dataset, held: Dataset, *, vocabulary_size: int
) -> tuple[Any, int] | None:
    """The trained model and how many instances trained it; None on a worker that is not the chief."""
    from training import checkpoints, distributed, models

    # Several instances (maas train submit --instance-count): MultiWorkerMirroredStrategy, made before
    # TensorFlow's first tensor; one: no strategy at all (ARCHITECTURE.md, "The training job").
    dist = distributed.setup(env)
    print(f"cluster: {dist.describe()}", flush=True)
    models.set_seed(args.seed)
    saved_in = checkpoints.checkpoint_dir(env.root)
    config = checkpoints.fingerprint({**vars(args), "train_rows": len(train), "held_rows": len(held)})
    with dist.scope():  # the model's variables mirrored on every worker
        model, done = checkpoints.restore(saved_in, config)
        if model is None:
            given = BuildInputs(
                train.x,
                train.y,
                len(train.labels),
                args.learning_rate,
                vocabulary_size,
                {key: getattr(args, key) for key in chosen.architecture},
            )
            model = chosen.build(given)
    print(f"model: {model.name}, {model.count_params():,} parameters, backend {models.keras_versions()}", flush=True)
    callbacks: list[Any] = [models.MetricLines(args.epochs)]
    if saved_in is not None and dist.is_chief:
        callbacks.append(checkpoints.SaveEveryEpoch(saved_in, config))
    dist.fit(  # batch_size per replica: global batch = batch_size x replicas
        model,
        train.x,
        train.y,
        batch_size=args.batch_size,
        epochs=args.epochs,
        initial_epoch=done,
        validation_data=(held.x, held.y),
        callbacks=callbacks,
        verbose=0,
    )
    if not dist.is_chief:
        print("published: no (not the chief: it exports, compresses and publishes the model all trained)")
        return None
    return dist.detach(model), dist.workers  # the chief's export and measurements see every held-out row


def _candidate_line(c: Any) -> str:
    """One candidate in a line a terminal shows whole: its figures and verdict, the reason without the
    figures it repeats (the manifest keeps every reason in full)."""
    if c.latency_ms is None or c.batch_latency_ms is None or c.usd_per_million is None:
        measured = "not measured"
    else:
        metric = f"rmse {c.rmse:.4f}" if c.rmse is not None else f"accuracy {c.accuracy:.4f}"
        measured = f"{metric}, {c.latency_ms:.3f}/{c.batch_latency_ms:.3f} ms, ${c.usd_per_million:.2g}/M"
    reason = re.sub(r" \([^()]*\)", "", c.reason or "").removeprefix("rejected: ")
    if c.accepted:
        return f"{c.size_bytes:,} bytes, {measured}: ACCEPTED, {reason.split(':')[0].split(';')[0]}"
    # Passed over within the gate: the comparison that decided ("1.5x int8-static's"); else why it failed.
    decided = reason.rsplit(", ", 1)[-1] if " but " in reason else reason
    return f"{c.size_bytes:,} bytes, {measured}: rejected, {decided}"


def _compression_menu(
    args: argparse.Namespace,
    chosen: Family,
    model: Any,
    train: Dataset,
    held: Dataset,
    fp32_path: Path,
    parity: float,
    work: Path,
) -> Any:
    """Build every requested candidate and measure each on the held-out rows, then gate them."""
    from training import compress, export, models

    menu = compress.parse_menu(args.compression)
    io = graph_tensors(fp32_path)
    fp32_probabilities = compress.predict(fp32_path, held.x)
    calibration = compress.calibration_sample(train.x, args.calibration_rows, args.seed)
    start, optimizer = _transformer_optimizer(chosen, fp32_path, work)

    def from_fp32(method: str) -> compress.Built:
        dst = compress.build(method, start, work / compress.FILES[method], calibration=calibration)
        details = {"calibration_rows": len(calibration), "calibration_set": "train"} if method == "int8-static" else {}
        if start != fp32_path:
            details["built_from"] = "fp32 after onnxruntime's transformer optimiser"
        return compress.Built(dst, reference=fp32_probabilities, details=details)

    def pruned() -> compress.Built:
        from training.pruning import prune_fine_tune, sparsity

        student = prune_fine_tune(
            model,
            train.x,
            train.y,
            target_sparsity=args.pruning_sparsity,
            epochs=args.pruning_epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate / 4,  # fine-tuning a trained model
            callbacks=[models.MetricLines(args.pruning_epochs, label="pruned")],
        )
        source = export.export_onnx(student, work / "model.pruned.fp32.onnx", opset=export.OPSET)
        export_parity = export.check_parity(student, source, held.x)
        dst = compress.quantize_int8(source, work / compress.FILES["pruned"])
        details = {
            "sparsity": round(sparsity(student), 4),
            "target_sparsity": args.pruning_sparsity,
            "fine_tune_epochs": args.pruning_epochs,
            "then": "int8-dynamic",
            "fp32_export_parity_max_abs_diff": export_parity,
            "fp32_size_bytes": source.stat().st_size,
            "fp32_gzip_bytes": compress.gzip_bytes(source),
        }
        return compress.Built(dst, reference=compress.predict(source, held.x), details=details)

    def distilled() -> compress.Built:
        from training.distill import distill

        epochs = args.distillation_epochs or args.epochs
        student = distill(
            model,
            train.x,
            train.y,
            len(train.labels),
            epochs=epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            temperature=args.distillation_temperature,
            callbacks=[models.MetricLines(epochs, label="distilled")],
        )
        dst = export.export_onnx(student, work / compress.FILES["distilled"], opset=export.OPSET)
        details = {
            "student_parameters": student.count_params(),
            "teacher_parameters": model.count_params(),
            "epochs": epochs,
            "temperature": args.distillation_temperature,
            # Kept fp32: the student is already ~1/7 of the teacher and the fastest candidate at batch 1;
            # quantising it too would stack a second loss on the one the gate already sees.
            "format": "fp32",
        }
        return compress.Built(dst, parity=export.check_parity(student, dst, held.x), details=details)

    makers = {"pruned": pruned, "distilled": distilled}
    candidates = [
        compress.evaluate(
            "fp32",
            lambda: compress.Built(fp32_path, parity=parity, details=optimizer),
            held.x,
            held.y,
            io=io,
            source="keras",
            task=chosen.task,
        )
    ]
    if not candidates[0].usable:
        raise export.ExportError(f"the fp32 baseline cannot be evaluated: {candidates[0].reason}")
    for method in menu[1:]:
        make = makers.get(method) or functools.partial(from_fp32, method)
        source = {"pruned": "pruned fp32 export", "distilled": "keras student"}.get(method, "fp32")
        candidates.append(compress.evaluate(method, make, held.x, held.y, io=io, source=source, task=chosen.task))
    gate: dict[str, Any] = {
        "task": chosen.task,
        "max_rmse_increase_pct": args.max_rmse_increase_pct,
        "objective": args.objective,
        "memory_mb": args.serving_memory_mb or DEFAULT_MEMORY_MB,
    }
    best = compress.choose(candidates, args.max_accuracy_drop, **gate)
    return compress.Compression(best, candidates, args.max_accuracy_drop, eval_rows=len(held), **gate)


def _transformer_optimizer(chosen: Family, fp32_path: Path, work: Path) -> tuple[Path, dict[str, Any]]:
    """The graph the ONNX-level candidates start from: fp32 fused by onnxruntime's transformer
    optimiser where the family names a model type and it fuses something, else fp32 itself; and the
    optimiser's outcome for the fp32 candidate's details."""
    if not chosen.onnx_model_type:
        return fp32_path, {}
    from training import compress

    optimized, outcome = compress.optimize_transformer(fp32_path, work / "model.optimized.onnx", chosen.onnx_model_type)
    print(f"transformer optimiser ({chosen.onnx_model_type}): fused {outcome['fused'] or 'nothing'}", flush=True)
    return optimized or fp32_path, {"transformer_optimizer": outcome}


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
