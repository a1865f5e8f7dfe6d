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
from typing import Any

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
    console.quiet_onnxruntime()  # the registry's load check builds sessions here
    draft = manifest_from_onnx(onnx_file, labels, onnx_file.name)
    return publish_model_file(registry, name, onnx_file, draft, actor=getpass.getuser(), limits=limits)


def run(registry: Registry, args: Any) -> Any:
    """One models subcommand; returns what to print."""
    who = getpass.getuser()
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
