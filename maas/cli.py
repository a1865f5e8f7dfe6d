"""The developer CLI: local invoke and API driven by template.yaml, embedded S3, training, demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from maas import console
from maas.paths import state_dir
from training.cost import DEFAULT_OBJECTIVE, OBJECTIVES
from training.families import DEFAULT_FAMILY, FAMILIES
from training.families.transformer import DEFAULT_PRESET
from training.families.transformer import PRESETS as TRANSFORMER_PRESETS

# The job's hyperparameters `train local` and `train submit` both take as options.
HYPERPARAMETER_OPTIONS = ("epochs", "batch_size", "learning_rate", "max_accuracy_drop", "objective", "seed", "preset")


def _local_invoke(args: argparse.Namespace) -> int:
    from maas.lambda_runtime import FunctionError
    from maas.stack import load_template, local_functions, s3_for

    template = load_template(args.template, args.env_vars)
    event = json.loads(Path(args.event).read_text()) if args.event else {}
    with s3_for(template) as s3_env, local_functions(template, [args.function], s3_env, log=sys.stderr) as (fn,):
        try:
            result = fn.invoke(event)
        except FunctionError as err:
            print(json.dumps(err.payload, indent=2))
            return 1
    print(json.dumps(result, indent=2))
    return 0


def _start_api(args: argparse.Namespace) -> int:
    """The API port and the project are taken first, so a taken one is said before anything starts;
    on Ctrl-C the embedded S3 is retired first, so a start-api started meanwhile waits for it to stop
    instead of reusing it (maas.embedded_s3)."""
    from maas.local_api import LocalApi, bind
    from maas.stack import embedded_s3, load_template, local_functions, queue_consumers, serving

    template = load_template(args.template, args.env_vars)
    names = [n for n in template.function_ids() if template.function(n).routes]
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started in the background, where SIGINT is ignored
        signal.signal(signum, lambda *_: stop.set())
    with contextlib.ExitStack() as running:
        project = running.enter_context(serving(state_dir()))
        server = bind(args.port)
        s3 = running.enter_context(embedded_s3(template))
        s3_env = s3.client_env() if s3 else {}
        functions = running.enter_context(local_functions(template, names, s3_env, log=sys.stderr))
        consumers = running.enter_context(queue_consumers(template, s3_env, log=sys.stderr))
        api = LocalApi(functions, template.api_stage(), server=server, quiet=not console.verbose()).start()
        project.announce(api.url)
        _print_routes(api.url, functions, consumers)
        print(f"local API on {api.url} (Ctrl-C to stop)", flush=True)
        try:
            stop.wait()
        finally:
            if s3 is not None:
                s3.retire()
            api.stop()
            project.release()
    return 0


def _print_routes(url: str, functions: list[Any], consumers: list[str]) -> None:
    """Every route with --verbose; else a count per function (the API's /swagger lists them)."""
    for name in consumers:
        print(f"  files put under batch/in/ -> {name}")
    if console.verbose():
        for fn in functions:
            for route in fn.spec.routes:
                print(f"  {route.method:6} {url}{route.path}  -> {fn.spec.logical_id}")
        return
    counts = [f"{fn.spec.logical_id} {len({r.path for r in fn.spec.routes})} paths" for fn in functions]
    print(f"  routes: {', '.join(counts)}; listed at {url}/swagger (or with --verbose)")


def _local_batch(args: argparse.Namespace) -> int:
    from maas.local_batch import run

    ref = args.version or args.alias
    return run(Path(args.file), args.model, ref, Path(args.out), args.timeout, args.template, args.env_vars)


def _given(args: argparse.Namespace, *keys: str) -> dict[str, Any]:
    """The hyperparameters the command line set; the job (training.job.DEFAULTS, the family) has the rest."""
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def _train_local(args: argparse.Namespace) -> int:
    from maas.stack import load_template, s3_for
    from maas.train_local import run_job

    hyperparameters = {
        **_serving_limits(args),
        **_given(args, "model_name", "family", "label_column", *HYPERPARAMETER_OPTIONS),
    }
    template = load_template(args.template, args.env_vars)
    with s3_for(template) as s3_env:
        bucket = args.bucket or template.function("ApiFunction").environment["MODEL_BUCKET"]
        env = {**s3_env, "MAAS_MODEL_BUCKET": "" if args.no_publish else bucket}
        return run_job(state_dir() / "opt_ml", args.data, hyperparameters, env)


def _serving_limits(args: argparse.Namespace) -> dict[str, int]:
    """The job's serving_memory_mb and serving_storage_mb: the smallest serving function's in the template
    (``maas models publish`` checks the same), so the job refuses to publish a model they cannot hold."""
    from maas.models_cli import serving_limits

    limits = serving_limits(args)
    return {"serving_memory_mb": limits.memory_mb, "serving_storage_mb": limits.storage_mb}


def _hyperparameter(text: str) -> tuple[str, Any]:
    """KEY=VALUE from the command line; VALUE is read as JSON when it parses (10, 0.5, true), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.replace("-", "_"), value


def _train_submit(args: argparse.Namespace) -> int:
    from training.submit import Compute, SubmitError, execution_input, submit, wait

    hyperparameters: dict[str, Any] = {**_serving_limits(args), **dict(args.hyperparameter or [])}
    hyperparameters.update(_given(args, "model_name", *HYPERPARAMETER_OPTIONS))
    # None: training.submit's defaults (Compute), the one place they are written.
    given = {
        "instance_type": args.instance_type,
        "instance_count": args.instance_count,
        "max_runtime_s": args.max_runtime,
        "max_wait_s": args.max_wait,
    }
    compute = Compute(spot=args.spot, **{k: v for k, v in given.items() if v is not None})
    try:
        submission = submit(
            role_arn=args.role_arn,
            bucket=args.bucket,
            train=args.train,
            validation=args.validation,
            hyperparameters=hyperparameters,
            region=args.region,
            image=args.image,
            compute=compute,
            job_name=args.job_name,
            start=not args.execution_input,
            log=lambda line: print(line, file=sys.stderr if args.execution_input else sys.stdout),
        )
        if args.execution_input:
            print(json.dumps(execution_input(submission.request), indent=2))
            return 0
    except SubmitError as err:
        print(f"maas train submit: {err}", file=sys.stderr)
        return 2
    print(f"job: {submission.job_arn}")
    if not args.wait:
        return 0
    job = wait(submission.job_name, region=submission.region, poll_s=args.poll)
    return 0 if job["TrainingJobStatus"] == "Completed" else 1


def _models(args: argparse.Namespace) -> int:
    from maas.models_cli import render, run
    from maas.stack import load_template, local_client, s3_for
    from maas_core.shared.errors import MaasError, ModelNotFound, VersionNotFound
    from maas_core.shared.registry import Registry

    template = load_template(args.template, args.env_vars)
    with s3_for(template) as env:
        bucket = args.bucket or template.function("ApiFunction").environment["MODEL_BUCKET"]
        registry = Registry(bucket, local_client(env, "s3") if env else None)
        try:
            result = run(registry, args)
        except MaasError as error:
            # A name or version that does not exist is the user's to fix (2); any other refusal, 1.
            code = console.USAGE if isinstance(error, ModelNotFound | VersionNotFound) else console.FAILED
            if args.json:
                print(json.dumps(error.to_body(), indent=2), file=sys.stderr)
            else:
                print(f"maas: {_said(error, registry)}", file=sys.stderr)
            return code
    if args.json or not render(args.models_command, result, sys.stdout):
        print(json.dumps(result, indent=2))
    return 0


def _said(error: Any, registry: Any) -> str:
    """An error in one line, with what to do: a model that does not exist names those that do."""
    from maas_core.shared.errors import ModelNotFound

    if isinstance(error, ModelNotFound):
        names = registry.list_models()
        there = f"the registry has {', '.join(names)}" if names else "the registry has no model yet"
        return f"{error.message}; {there} (maas models list)"
    if error.code == "registry_unavailable":
        return f"{error.message} ({error.code}): S3 did not answer; check the network and AWS_PROFILE's credentials"
    return f"{error.message} ({error.code})"


def _demo(args: argparse.Namespace) -> int:
    from maas.demo import main

    return main(epochs=args.epochs, samples=args.samples)


EXIT_CODES = """exit codes:
  0  done
  1  a job, a request or a batch file failed (its error is printed)
  2  usage: a wrong option, or something to fix first (a port in use, a model that does not exist,
     an S3 endpoint that does not answer), said in one line with what to do

Libraries (TensorFlow, onnxruntime, moto, the Lambda emulator) are quiet unless --verbose.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maas", description=__doc__, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="the libraries' and the Lambda emulator's own logs too"
    )
    parser.add_argument("--template", help="path to template.yaml (default: found from the current folder)")
    parser.add_argument(
        "--env-vars",
        help='JSON overriding function variables, as sam local takes it: {"Parameters": {...}, "Fn": {...}}',
    )
    commands = parser.add_subparsers(dest="command", required=True)

    _local_commands(commands)
    _train_commands(commands)
    _models_commands(commands)

    # Its options are bench's own (python -m bench --help): passed through as they come.
    commands.add_parser(
        "bench", add_help=False, help="benchmarks against a TensorFlow handler -> bench/results.{json,md,png}"
    )

    demo = commands.add_parser("demo", help="train, publish, serve and query the digits model locally")
    demo.add_argument("--epochs", type=int, default=20)
    demo.add_argument("--samples", type=int, default=8, help="held-out digits sent over HTTP, one line each")
    demo.set_defaults(run=_demo)
    return parser


def _local_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """maas local invoke | start-api | batch: the template's functions on this machine."""
    local = commands.add_parser("local", help="run functions from template.yaml on this machine, no Docker")
    local_cmds = local.add_subparsers(dest="local_command", required=True)
    invoke = local_cmds.add_parser("invoke", help="invoke one function once through the Lambda RIE")
    invoke.add_argument("function", help="logical id in template.yaml, e.g. ApiFunction")
    invoke.add_argument("-e", "--event", help="event JSON file, e.g. events/predict_digits.json")
    invoke.set_defaults(run=_local_invoke)
    api = local_cmds.add_parser("start-api", help="serve the template's API routes on 127.0.0.1")
    api.add_argument("--port", type=int, default=3000)
    api.set_defaults(run=_start_api)

    batch = local_cmds.add_parser("batch", help="score a file through S3 -> SQS -> BatchFunction, download the output")
    batch.add_argument("file", help="a .jsonl, .csv or .npy file")
    batch.add_argument("--model", required=True)
    which = batch.add_mutually_exclusive_group()
    which.add_argument("--alias", default="production")
    which.add_argument("--version")
    batch.add_argument("--out", default="batch-out", help="folder for results.jsonl, errors.jsonl, summary.json")
    batch.add_argument("--timeout", type=float, default=600, help="seconds to wait for the summary")
    batch.set_defaults(run=_local_batch)


def _hyperparameter_options(parser: argparse.ArgumentParser) -> None:
    """The job's hyperparameters both `train local` and `train submit` take (defaults: training.job.DEFAULTS
    and the family's); their names are HYPERPARAMETER_OPTIONS."""
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", dest="batch_size", type=int, help="per replica on several instances")
    parser.add_argument("--learning-rate", dest="learning_rate", type=float)
    parser.add_argument("--max-accuracy-drop", dest="max_accuracy_drop", type=float)
    parser.add_argument(
        "--objective",
        choices=list(OBJECTIVES),
        help="of the compression candidates within the accuracy gate, publish the cheapest per request (cost), the "
        f"fastest at batch 1 (latency) or the smallest file (size); default: {DEFAULT_OBJECTIVE}",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--preset", choices=list(TRANSFORMER_PRESETS), help=f"transformer sizes (default {DEFAULT_PRESET})"
    )


def _train_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """maas train local | submit: the SageMaker-contract job here, or on SageMaker."""
    train = commands.add_parser("train", help="training jobs")
    train_cmds = train.add_subparsers(dest="train_command", required=True)
    train_local = train_cmds.add_parser("local", help="run the SageMaker-contract job here and publish")
    train_local.add_argument(
        "--family",
        choices=list(FAMILIES),
        help=f"model family (default {DEFAULT_FAMILY}); tabular, logistic and linear train on CSV/JSON Lines "
        "feature rows, text and text-rnn on a text column",
    )
    train_local.add_argument(
        "--data",
        help="channel folder, file or s3:// prefix of .npz, .csv or .jsonl (default: bundled digits for image, "
        "breast cancer for tabular/logistic, diabetes for linear, generated reviews for text)",
    )
    train_local.add_argument("--label-column", dest="label_column", help="CSV column / JSON key of the label")
    train_local.add_argument(
        "--name",
        dest="model_name",
        help="model name in the registry (default: the family's: digits, breast-cancer, diabetes, ...)",
    )
    _hyperparameter_options(train_local)
    train_local.add_argument("--bucket", help="registry bucket (default: the template's MODEL_BUCKET)")
    train_local.add_argument("--no-publish", action="store_true", help="train and export only")
    train_local.set_defaults(run=_train_local)

    submit = train_cmds.add_parser(
        "submit", help="start the job on SageMaker (GPU, script mode); it publishes to the bucket's registry"
    )
    submit.add_argument("--role-arn", dest="role_arn", required=True, help="execution role SageMaker assumes")
    submit.add_argument("--bucket", required=True, help="model bucket: code, channels, outputs and the registry")
    submit.add_argument("--train", required=True, help="train channel: s3://bucket/prefix/ or a local folder to upload")
    submit.add_argument("--validation", help="validation channel: s3:// prefix or local folder")
    submit.add_argument(
        "--name", dest="model_name", help="model name in the registry (default: the family's, digits for image)"
    )
    _hyperparameter_options(submit)
    submit.add_argument(
        "--hyperparameter", "-H", action="append", type=_hyperparameter, metavar="KEY=VALUE", help="any other"
    )
    submit.add_argument("--instance-type", dest="instance_type", help="default: one NVIDIA A10G GPU (ml.g5.xlarge)")
    submit.add_argument(
        "--instance-count",
        dest="instance_count",
        type=int,
        help="instances to train on together, data parallel (MultiWorkerMirroredStrategy; default 1); "
        "--batch-size is then per replica (per GPU)",
    )
    submit.add_argument("--spot", action="store_true", help="managed spot training, checkpoints kept in S3")
    submit.add_argument("--max-runtime", dest="max_runtime", type=int, help="seconds (default 4 hours)")
    submit.add_argument("--max-wait", dest="max_wait", type=int, help="seconds, with --spot (default 2 x runtime)")
    submit.add_argument("--image", help="training image URI (default: the AWS TensorFlow GPU DLC of the region)")
    submit.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")
    submit.add_argument("--job-name", dest="job_name", help="default: <name>-<UTC time>-<random>")
    submit.add_argument(
        "--execution-input",
        dest="execution_input",
        action="store_true",
        help="upload code and data, print TrainingStateMachine's input instead of starting the job",
    )
    submit.add_argument("--wait", action="store_true", help="poll until the job ends; exit 1 unless it completed")
    submit.add_argument("--poll", type=float, default=30.0, help="seconds between polls with --wait")
    submit.set_defaults(run=_train_submit)


def _sizing_options(parser: argparse.ArgumentParser) -> None:
    """The serving functions' limits a model is sized against (ARCHITECTURE.md, "Serving rules")."""
    parser.add_argument(
        "--memory-mb",
        dest="memory_mb",
        type=int,
        help="the serving functions' memory (default: the smallest in the template)",
    )
    parser.add_argument(
        "--storage-mb",
        dest="storage_mb",
        type=int,
        help="their ephemeral storage (default: the smallest in the template)",
    )


def _models_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """maas models ...: the registry."""
    models = commands.add_parser(
        "models", help="the registry: list, describe, publish, promote, rollback, canary, delete, number, history"
    )
    models.add_argument("--bucket", help="registry bucket (default: the template's MODEL_BUCKET)")
    models_cmds = models.add_subparsers(dest="models_command", required=True)
    models_cmds.add_parser("list", help="models and their aliases").set_defaults(run=_models)
    describe = models_cmds.add_parser("describe", help="versions, aliases and the manifest")
    describe.add_argument("name")
    describe.add_argument("--alias")
    describe.add_argument("--version")
    _sizing_options(describe)
    describe.set_defaults(run=_models)
    byo = models_cmds.add_parser("publish", help="publish an ONNX file trained anywhere (schema read from the graph)")
    byo.add_argument("--name", required=True)
    byo.add_argument("--onnx", required=True, help="the .onnx file")
    byo.add_argument("--labels", help="class names, comma-separated or a JSON file (makes it a classifier)")
    _sizing_options(byo)
    byo.set_defaults(run=_models)
    promote = models_cmds.add_parser("promote", help="point an alias at a version (compare-and-swap)")
    promote.add_argument("name")
    promote.add_argument("version")
    promote.add_argument("--alias", default="production")
    promote.add_argument("--reason", default="")
    promote.set_defaults(run=_models)
    rollback = models_cmds.add_parser("rollback", help="point an alias back at its previous version")
    rollback.add_argument("name")
    rollback.add_argument("--alias", default="production")
    rollback.add_argument("--reason", default="")
    rollback.set_defaults(run=_models)
    canary = models_cmds.add_parser("canary", help="send a share of an alias's traffic to another version")
    canary.add_argument("name")
    canary.add_argument("version", nargs="?", help="the canary version (leave out with --end)")
    canary.add_argument("--weight", type=float, default=10.0, help="percent of the alias's requests (default 10)")
    canary.add_argument("--alias", default="production")
    canary.add_argument("--end", action="store_true", help="end the canary: all traffic to the alias's version")
    canary.add_argument("--reason", default="")
    canary.set_defaults(run=_models)
    delete = models_cmds.add_parser("delete", help="delete a version that no alias (or canary) names")
    delete.add_argument("name")
    delete.add_argument("version")
    delete.set_defaults(run=_models)
    number = models_cmds.add_parser(
        "number", help="number the versions published before numbers (oldest first), as a publish would"
    )
    number.add_argument("name")
    number.set_defaults(run=_models)
    history = models_cmds.add_parser("history", help="every change of an alias: who, when, from, to, why")
    history.add_argument("name")
    history.add_argument("--alias", default="production")
    history.set_defaults(run=_models)
    # Every models command takes --json: its answer as JSON, the fields scripts read unchanged (list,
    # describe and history print a table otherwise; the others print JSON either way).
    for command in models_cmds.choices.values():
        command.add_argument("--json", action="store_true", help="JSON for scripts instead of a table")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    console.configure(args.verbose)
    if args.command == "bench":
        from maas.bench import main as bench

        return bench(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return int(args.run(args))
    except console.Refused as refused:
        print(f"maas: {refused}", file=sys.stderr)
        return console.USAGE


if __name__ == "__main__":
    sys.exit(main())
