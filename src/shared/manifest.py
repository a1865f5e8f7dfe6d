"""The manifest: metadata written beside each ``model.onnx`` and read at load time.

Training writes it, the registry refuses versions whose manifest does not verify, and serving
derives input validation and response shaping from it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from maas_core.shared.dtypes import BY_ORT, DTYPES
from maas_core.shared.errors import ModelIntegrityError, ModelRejected
from maas_core.shared.model_check import publishable_session
from maas_core.shared.text import tokenizer_problems

SCHEMA_VERSION = 1
TASKS = ("classification", "regression")

# Fields ARCHITECTURE.md requires of every manifest.
REQUIRED_FIELDS = (
    "schema_version",
    "name",
    "version",
    "created_at",
    "task",
    "inputs",
    "outputs",
    "preprocessing",
    "artifact",
    "compression",
    "metrics",
    "training_job",
    "framework",
)


def _tensor_problems(where: str, tensors: Any) -> list[str]:
    if not isinstance(tensors, list) or not tensors:
        return [f"{where}: expected a non-empty list of tensors, got {type(tensors).__name__}"]
    problems = []
    for i, tensor in enumerate(tensors):
        if not isinstance(tensor, dict):
            problems.append(f"{where}[{i}]: expected an object")
            continue
        if not isinstance(tensor.get("name"), str) or not tensor["name"]:
            problems.append(f"{where}[{i}].name: expected a non-empty string")
        if tensor.get("dtype") not in DTYPES:
            problems.append(f"{where}[{i}].dtype: expected one of {tuple(DTYPES)}, got {tensor.get('dtype')!r}")
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(d is None or (isinstance(d, int) and d > 0) for d in shape):
            problems.append(f"{where}[{i}].shape: expected a list of positive ints or null, got {shape!r}")
        if "tokenizer" in tensor:
            if tensor.get("dtype") != "string":
                problems.append(f"{where}[{i}].tokenizer: only a string input is tokenised")
            problems += tokenizer_problems(tensor["tokenizer"], f"{where}[{i}].tokenizer")
    return problems


def manifest_problems(manifest: Any) -> list[str]:
    """Everything wrong with a manifest, as sentences; an empty list means it verifies."""
    if not isinstance(manifest, dict):
        return [f"manifest: expected a JSON object, got {type(manifest).__name__}"]
    problems = [f"{field}: missing" for field in REQUIRED_FIELDS if field not in manifest]
    if problems:
        return problems
    if manifest["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version: expected {SCHEMA_VERSION}, got {manifest['schema_version']!r}")
    if manifest["task"] not in TASKS:
        problems.append(f"task: expected one of {TASKS}, got {manifest['task']!r}")
    problems += _tensor_problems("inputs", manifest["inputs"])
    problems += _tensor_problems("outputs", manifest["outputs"])
    artifact = manifest["artifact"]
    if not isinstance(artifact, dict):
        problems.append("artifact: expected an object")
    else:
        sha = artifact.get("sha256")
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            problems.append("artifact.sha256: expected 64 lowercase hex characters")
        if not (isinstance(artifact.get("size_bytes"), int) and artifact["size_bytes"] > 0):
            problems.append("artifact.size_bytes: expected a positive integer")
    if manifest["task"] == "classification":
        labels = manifest.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            problems.append("labels: a classification model needs a non-empty list of label strings")
    return problems


def verify_manifest(manifest: Any, *, name: str | None = None, version: str | None = None) -> dict[str, Any]:
    """Return the manifest if it verifies (and belongs to name/version when given), else raise."""
    problems = manifest_problems(manifest)
    if not problems and name is not None and manifest["name"] != name:
        problems.append(f"name: expected {name!r}, got {manifest['name']!r}")
    if not problems and version is not None and manifest["version"] != version:
        problems.append(f"version: expected {version!r}, got {manifest['version']!r}")
    if problems:
        raise ModelIntegrityError("model manifest does not verify", problems=problems[:20])
    return manifest


def graph_tensors(source: bytes | str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(inputs, outputs) of an ONNX model (bytes or a path) as manifest entries: name, dtype, shape
    (null = free). Read by the serving onnxruntime, so what training and ``maas models publish``
    declare is what serving sees; graph initialisers are not inputs."""
    session = publishable_session(source if isinstance(source, bytes) else str(source))
    return [_tensor(i) for i in session.get_inputs()], [_tensor(o) for o in session.get_outputs()]


def _tensor(node: Any) -> dict[str, Any]:
    dtype = BY_ORT.get(node.type)
    if dtype is None:
        raise ModelRejected(
            f"tensor {node.name!r} has type {node.type}, which MaaS cannot serve",
            expected=sorted(BY_ORT),
            received=node.type,
        )
    # onnxruntime gives a free dimension as None or its symbolic name
    shape = [d if isinstance(d, int) and d > 0 else None for d in node.shape]
    return {"name": node.name, "dtype": dtype.name, "shape": shape}


def manifest_from_graph(
    source: bytes | str | Path,
    *,
    task: str,
    labels: list[str] | None,
    created_at: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A manifest read from its graph (ARCHITECTURE.md, "Manifest"), for training and for
    ``maas models publish``: ``labels`` None (regression) leaves the field out; ``fields`` are the
    rest (preprocessing, compression, metrics, training_job, framework). The registry adds name,
    version and artifact when it publishes."""
    inputs, outputs = graph_tensors(source)
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_at": (created_at or datetime.now(UTC)).isoformat(timespec="seconds"),
        "task": task,
        "inputs": inputs,
        "outputs": outputs,
    }
    if labels is not None:
        manifest["labels"] = list(labels)
    return manifest | fields
