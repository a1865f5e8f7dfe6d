"""`maas models ...`: the registry from the command line, against the embedded S3 or AWS.

``publish`` brings a model trained anywhere (PyTorch, scikit-learn via skl2onnx, ...): its manifest
schema is read from the ONNX graph, and the registry refuses it unless it loads in the serving
onnxruntime and matches that schema, and fits the functions that serve it (their MemorySize and
EphemeralStorage in template.yaml, or ``--memory-mb`` / ``--storage-mb``). ``publish`` and ``describe``
say what the model needs (``maas_core.shared.sizing``) beside those limits. A large model is published
split, its weights in ``model.onnx.data`` beside the graph (``training.weights``); a model split already
is published with the ``model.onnx.data`` beside it, and one naming any other weights' file is refused.
Wherever a command takes a version, the version's number (1, 2, 3 ...) names it too; ``list`` and
``describe`` show each version with its number; ``number`` numbers the versions published before
numbers existed, as the model's next publish would.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from maas import console
from maas_core.shared.errors import ModelNotFound
from maas_core.shared.manifest import (
    CLASSIFICATION,
    REGRESSION,
    Artifact,
    Draft,
    Manifest,
    TensorSpec,
    manifest_from_graph,
)
from maas_core.shared.registry import Registry
from maas_core.shared.sizing import Limits, Needs
from training.weights import publish_model_file

# The functions that download and load a model: the one with the least memory, and the one with the
# least /tmp, bound what may be published.
SERVING_FUNCTIONS = ("ApiFunction", "AdminFunction", "BatchFunction")


def _scores_first(outputs: Sequence[TensorSpec]) -> tuple[TensorSpec, ...]:
    """Serving reads a classifier's class scores from its first output: put the float [batch, classes]
    tensor first (skl2onnx classifiers list their int64 ``label`` output before ``probabilities``)."""
    return tuple(sorted(outputs, key=lambda o: not (o.dtype.startswith("float") and len(o.shape) == 2)))


def manifest_from_onnx(data: bytes | Path, labels: list[str] | None, source: str) -> Draft:
    """The manifest of a model trained elsewhere, from its graph (its bytes, or its path: a split model's
    weights are read from beside it); the registry then loads it in onnxruntime."""
    import onnx
    import onnxruntime as ort

    try:
        if isinstance(data, bytes):
            model = onnx.load_from_string(data)
            onnx.checker.check_model(model)
        else:
            model = onnx.load(str(data), load_external_data=False)
            onnx.checker.check_model(str(data))  # by path: the weights beside it are checked too
    except Exception as exc:
        raise SystemExit(f"maas: not a valid ONNX model: {exc}") from None
    manifest = manifest_from_graph(
        data,
        task=CLASSIFICATION if labels else REGRESSION,
        labels=labels or None,
        preprocessing={"client": "as the model's author documents it; published with maas models publish"},
        compression={"method": "as published", "candidates": []},
        metrics={},
        training_job={"id": f"external:{source}", "instance_type": "unknown", "duration_s": 0, "hyperparameters": {}},
        framework={
            "onnx_opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0),
            "onnxruntime": ort.__version__,
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
        },
    )
    return replace(manifest, outputs=_scores_first(manifest.outputs)) if labels else manifest


def serving_limits(args: Any) -> Limits:
    """The smallest MemorySize and EphemeralStorage among SERVING_FUNCTIONS in the template (with
    ``--env-vars`` applied), each replaced by ``--memory-mb`` / ``--storage-mb`` when given."""
    from maas.stack import load_template

    template = load_template(getattr(args, "template", None), getattr(args, "env_vars", None))
    specs = [template.function(name) for name in SERVING_FUNCTIONS]
    return Limits(
        memory_mb=getattr(args, "memory_mb", None) or min(spec.memory_mb for spec in specs),
        storage_mb=getattr(args, "storage_mb", None)
        or min(int(spec.environment["EPHEMERAL_STORAGE_MB"]) for spec in specs),
    )


def sizing(artifact: Artifact, limits: Limits) -> dict[str, Any]:
    """What a published model needs (its graph and, when split, its weights), the functions' limits, and
    whether it fits them."""
    needs = Needs.of(artifact.size_bytes, artifact.external_data.size_bytes if artifact.external_data else 0)
    return {"needs": needs.to_json(), "limits": limits.to_json(), "fits": limits.refusal(needs) is None}


def publish(
    registry: Registry, name: str, onnx_file: Path, labels: list[str] | None, limits: Limits | None = None
) -> Manifest:
    draft = manifest_from_onnx(onnx_file, labels, onnx_file.name)
    return publish_model_file(registry, name, onnx_file, draft, actor=getpass.getuser(), limits=limits)


def run(registry: Registry, args: Any) -> Any:
    """One models subcommand; returns what to print."""
    who = getpass.getuser()
    if args.models_command in ("publish", "promote", "rollback", "canary"):
        console.quiet_onnxruntime()  # these load the version in onnxruntime here, to check it
    if args.models_command == "list":
        return [
            {"name": n, "aliases": registry.list_aliases(n), "versions": registry.numbered_versions(n)}
            for n in registry.list_models()
        ]
    if args.models_command == "describe":
        version = registry.resolve(args.name, args.version or args.alias)
        manifest = registry.read_manifest(args.name, version)
        return {
            "name": args.name,
            "version": version,
            "version_number": registry.number_of(manifest),
            "versions": registry.numbered_versions(args.name),
            "aliases": registry.list_aliases(args.name),
            "serving": sizing(manifest.artifact, serving_limits(args)),
            "manifest": manifest.to_json(),
        }
    if args.models_command == "publish":
        labels = (
            json.loads(Path(args.labels).read_text())
            if args.labels and Path(args.labels).is_file()
            else (args.labels.split(",") if args.labels else None)
        )
        limits = serving_limits(args)
        published = publish(registry, args.name, Path(args.onnx), labels, limits)
        return {
            "name": args.name,
            "version": published.version,
            "version_number": published.version_number,
            "aliases": registry.list_aliases(args.name),
            "serving": sizing(published.artifact, limits),
        }
    if args.models_command == "promote":
        record = registry.promote(args.name, args.alias, args.version, actor=who, reason=args.reason)
        return record.body
    if args.models_command == "rollback":
        return registry.rollback(args.name, args.alias, actor=who, reason=args.reason).body
    if args.models_command == "canary":
        if args.end == bool(args.version):
            raise SystemExit("maas: give a canary version, or --end to end the canary")
        weight = args.weight / 100.0
        return registry.set_canary(args.name, args.alias, args.version, weight, actor=who, reason=args.reason).body
    if args.models_command == "delete":
        version = registry.exact_version(args.name, args.version)  # a number says which version it was
        registry.delete_version(args.name, version)
        return {"name": args.name, "version": version, "deleted": True}
    if args.models_command == "number":
        versions = registry.list_versions(args.name)
        if not versions:
            raise ModelNotFound(f"no model named {args.name!r}", model=args.name)
        registry.number_versions(args.name, versions)
        return {"name": args.name, "versions": registry.numbered_versions(args.name)}
    if args.models_command == "history":
        return registry.alias_history(args.name, args.alias)
    raise SystemExit(f"maas: unknown models command {args.models_command!r}")


# -- what a person reads: tables by default, the JSON above with --json (its fields unchanged) -------
LIST_COLUMNS = ["name", "versions", "latest", "aliases"]
VERSION_COLUMNS = ["number", "version", "aliases"]
HISTORY_COLUMNS = ["when", "who", "from", "to", "canary", "reason"]


def _numbers(versions: list[dict[str, Any]]) -> dict[str, Any]:
    return {v["version"]: v["number"] for v in versions}


def _ref(version: str | None, numbers: dict[str, Any]) -> str:
    """A version by its number where it has one (what a person types), else by its id."""
    if not version:
        return "-"
    return str(numbers[version]) if numbers.get(version) is not None else version


def _aliases(aliases: dict[str, str], numbers: dict[str, Any]) -> str:
    return ", ".join(f"{alias}={_ref(v, numbers)}" for alias, v in sorted(aliases.items())) or "-"


def _tensors(specs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{t['name']} {t['dtype']} {t['shape']}" for t in specs)


def _mb(spec: dict[str, int]) -> str:
    return f"{spec['memory_mb']:,} MB memory, {spec['storage_mb']:,} MB storage"


def render(command: str, result: Any, out: IO[str]) -> bool:
    """Print a table (or key: value lines) for the commands that have one; False for the others."""
    if command == "list":
        rows = []
        for model in result:
            numbers = _numbers(model["versions"])
            latest: str = model["versions"][-1]["version"] if model["versions"] else "-"
            rows.append(
                {
                    "name": model["name"],
                    "versions": len(model["versions"]),
                    "latest": f"{numbers[latest]} ({latest})" if numbers.get(latest) else latest,
                    "aliases": _aliases(model["aliases"], numbers),
                }
            )
        console.table(rows, LIST_COLUMNS, out)
        return True
    if command == "describe":
        _describe(result, out)
        return True
    if command == "history":
        rows = [
            {
                "when": e.get("updated_at", ""),
                "who": e.get("updated_by", ""),
                "from": e.get("from") or "-",
                "to": e.get("version", ""),
                "canary": f"{e['canary']['version']} {e['canary']['weight']:.0%}" if e.get("canary") else "-",
                "reason": e.get("reason") or "-",
            }
            for e in result
        ]
        console.table(rows, HISTORY_COLUMNS, out)
        return True
    return False


def _describe(result: dict[str, Any], out: IO[str]) -> None:
    manifest, serving = result["manifest"], result["serving"]
    numbers = _numbers(result["versions"])
    labels = manifest.get("labels") or []
    metrics = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in manifest["metrics"].items())
    artifact = manifest["artifact"]
    fields = [
        ("name", result["name"]),
        ("version", f"{result['version']} (number {result['version_number'] or '-'})"),
        ("aliases", _aliases(result["aliases"], numbers)),
        ("task", manifest["task"] + (f", {len(labels)} labels: {', '.join(labels[:10])}" if labels else "")),
        ("inputs", _tensors(manifest["inputs"])),
        ("outputs", _tensors(manifest["outputs"])),
        ("artifact", f"{artifact['file']}, {artifact['size_bytes']:,} bytes, sha256 {artifact['sha256'][:12]}"),
        ("compression", manifest["compression"].get("method", "-")),
        ("metrics", metrics or "-"),
        ("trained by", manifest["training_job"].get("id", "-")),
        ("needs", _mb(serving["needs"])),
        ("limits", f"{_mb(serving['limits'])}: {'fits' if serving['fits'] else 'DOES NOT FIT'}"),
    ]
    width = max(len(key) for key, _ in fields) + 1
    for key, value in fields:
        out.write(f"{key + ':':{width}} {value}\n")
    out.write("\n")
    aliases_of = {
        v["version"]: sorted(a for a, ver in result["aliases"].items() if ver == v["version"])
        for v in result["versions"]
    }
    rows = [
        {"number": v["number"] or "-", "version": v["version"], "aliases": ", ".join(aliases_of[v["version"]]) or "-"}
        for v in result["versions"]
    ]
    console.table(rows, VERSION_COLUMNS, out)
