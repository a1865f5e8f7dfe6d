"""The manifest: metadata written beside each ``model.onnx`` and read at load time (ARCHITECTURE.md,
"Registry on S3": the manifest's fields).

Training writes a :class:`Draft` (what a trainer knows), the registry adds name, version and artifact
and refuses a :class:`Manifest` that does not verify, and serving derives input validation and
response shaping from its typed :class:`TensorSpec` entries. The typed objects are frozen: lists are
tuples and objects read-only mappings. ``to_json`` gives back the exact JSON object, keys the schema
does not name (a newer or older trainer's) and their order included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from maas_core.shared.dtypes import BY_ORT, DTYPES
from maas_core.shared.errors import ModelIntegrityError, ModelRejected
from maas_core.shared.layout import DATA_FILE
from maas_core.shared.model_check import publishable_session
from maas_core.shared.text import tokenizer_problems

SCHEMA_VERSION = 1
# The manifest's ``task``: how serving shapes predictions and which metric gates compression.
CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = (CLASSIFICATION, REGRESSION)

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
# What only the registry knows; a trainer's draft has every other required field.
REGISTRY_FIELDS = ("name", "version", "artifact")
DRAFT_FIELDS = tuple(f for f in REQUIRED_FIELDS if f not in REGISTRY_FIELDS)


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


def _file_problems(where: str, described: Any) -> list[str]:
    """A stored file's sha256 and size: serving refuses bytes that differ from them."""
    if not isinstance(described, dict):
        return [f"{where}: expected an object"]
    problems = []
    sha = described.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        problems.append(f"{where}.sha256: expected 64 lowercase hex characters")
    size = described.get("size_bytes")
    if not (type(size) is int and size > 0):
        problems.append(f"{where}.size_bytes: expected a positive integer")
    return problems


def _artifact_problems(artifact: Any) -> list[str]:
    problems = _file_problems("artifact", artifact)
    if isinstance(artifact, dict) and "external_data" in artifact:
        data = artifact["external_data"]
        problems += _file_problems("artifact.external_data", data)
        if isinstance(data, dict) and data.get("file") != DATA_FILE:
            # onnxruntime opens the file the graph names beside the graph: one fixed name, no path.
            problems.append(f"artifact.external_data.file: expected {DATA_FILE!r}, got {data.get('file')!r}")
    return problems


def manifest_problems(manifest: Any, required: tuple[str, ...] = REQUIRED_FIELDS) -> list[str]:
    """Everything wrong with a manifest's JSON object (a draft's, with ``required=DRAFT_FIELDS``), as
    sentences; an empty list means it verifies."""
    if not isinstance(manifest, dict):
        return [f"manifest: expected a JSON object, got {type(manifest).__name__}"]
    problems = [f"{field}: missing" for field in required if field not in manifest]
    if problems:
        return problems
    if manifest["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version: expected {SCHEMA_VERSION}, got {manifest['schema_version']!r}")
    if manifest["task"] not in TASKS:
        problems.append(f"task: expected one of {TASKS}, got {manifest['task']!r}")
    problems += _tensor_problems("inputs", manifest["inputs"])
    problems += _tensor_problems("outputs", manifest["outputs"])
    if "artifact" in manifest:
        problems += _artifact_problems(manifest["artifact"])
    number = manifest.get("version_number")
    if "version_number" in manifest and not (type(number) is int and number > 0):
        # Optional: a manifest published before version numbers has none (the registry's numbers/ objects).
        problems.append(f"version_number: expected a positive integer, got {number!r}")
    if manifest["task"] == CLASSIFICATION:
        labels = manifest.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            problems.append("labels: a classification model needs a non-empty list of label strings")
    return problems


def _raise(problems: list[str]) -> None:
    if problems:
        raise ModelIntegrityError("model manifest does not verify", problems=problems[:20])


# -- the typed objects ----------------------------------------------------------------------------
_SCALARS = (str, int, float, bool, type(None))


def _freeze(value: Any) -> Any:
    """A JSON value that cannot be changed in place: objects become read-only mappings, lists tuples."""
    kind = type(value)
    if kind is dict:
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if kind is list:
        return tuple([v if type(v) in _SCALARS else _freeze(v) for v in value])
    return value


def _thaw(value: Any) -> Any:
    """The JSON value of a frozen one (or of a typed manifest object). Exact type checks first: a
    tokenizer's vocabulary is tens of thousands of strings, and an ABC check on each costs."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is tuple or kind is list:
        return [v if type(v) in _SCALARS else _thaw(v) for v in value]
    if kind is MappingProxyType or kind is dict:
        return {k: _thaw(v) for k, v in value.items()}
    return value.to_json() if isinstance(value, _Json) else value


class _Json:
    """What the typed manifest objects share: built from their JSON object, frozen, and written back
    as that object. ``extra`` holds the keys the schema does not name and ``_keys`` the order the
    keys came in, so ``to_json`` gives back what was read, key order included."""

    __slots__ = ()
    extra: Mapping[str, Any]
    _keys: tuple[str, ...]

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            object.__setattr__(self, f.name, _freeze(getattr(self, f.name)))

    @classmethod
    def _parse(cls, obj: Mapping[str, Any], **typed: Any) -> Any:
        """An instance from a verified JSON object; ``typed`` overrides fields that hold typed objects."""
        named = {f.name for f in fields(cls)} - {"extra", "_keys"}  # type: ignore[arg-type]
        known = {k: v for k, v in obj.items() if k in named} | typed
        make: Any = cls  # a dataclass below: its fields are keyword arguments
        return make(**known, extra={k: v for k, v in obj.items() if k not in named}, _keys=tuple(obj))

    def to_json(self) -> dict[str, Any]:
        """The JSON object: keys in the order they came (new ones after), the extra keys kept; an
        optional field that is None is left out unless it came as null."""
        out = {
            f.name: _thaw(getattr(self, f.name))
            for f in fields(self)  # type: ignore[arg-type]
            if f.name not in ("extra", "_keys") and (getattr(self, f.name) is not None or f.name in self._keys)
        }
        out.update(_thaw(self.extra))
        order = [k for k in self._keys if k in out] + [k for k in out if k not in self._keys]
        return {k: out[k] for k in order}


@dataclass(frozen=True, slots=True)
class TensorSpec(_Json):
    """One input or output: its name, dtype (a row of ``shared.dtypes``) and shape (None = free)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    # A string input's word tokenizer (``shared.text``): the graph takes its token ids instead.
    tokenizer: Mapping[str, Any] | None = None
    # A tabular input's feature names, which CSV batch files map columns by.
    columns: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    _keys: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> TensorSpec:
        """From a tensor entry that verified (``manifest_problems``)."""
        spec: TensorSpec = cls._parse(obj)
        return spec

    @property
    def graph_input(self) -> str:
        """The ONNX input this feeds: a tokenised string input feeds its token ids."""
        return str(self.tokenizer["graph_input"]) if self.tokenizer is not None else self.name


@dataclass(frozen=True, slots=True)
class ExternalData(_Json):
    """A split model's weights, ``model.onnx.data`` beside its graph (ONNX external data)."""

    sha256: str
    size_bytes: int
    file: str = DATA_FILE
    extra: Mapping[str, Any] = field(default_factory=dict)
    _keys: tuple[str, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Artifact(_Json):
    """The published ``model.onnx`` and, for a split model, its weights' file (ARCHITECTURE.md, "The
    manifest": ``artifact.external_data``): serving refuses bytes of another size or sha256."""

    sha256: str
    size_bytes: int
    file: str | None = None
    external_data: ExternalData | None = None  # None: every weight is inline in model.onnx
    extra: Mapping[str, Any] = field(default_factory=dict)
    _keys: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Artifact:
        """From an artifact that verified (``manifest_problems``)."""
        data = obj.get("external_data")
        artifact: Artifact = cls._parse(obj, external_data=ExternalData._parse(data) if data else None)
        return artifact

    @property
    def files_id(self) -> str:
        """What names this model's verified files on disk: model.onnx's sha256, then, for a split model, its
        weights'. A split graph holds no weights, so two trainings of one architecture share it byte for byte."""
        return f"{self.sha256}-{self.external_data.sha256}" if self.external_data else self.sha256

    @property
    def total_bytes(self) -> int:
        """What the model stores and loads: its graph and, when split, its weights' file."""
        return self.size_bytes + (self.external_data.size_bytes if self.external_data else 0)


def _tensors(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {where: [TensorSpec.from_json(t) for t in obj[where]] for where in ("inputs", "outputs")}


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft(_Json):
    """What a trainer knows of its model: a manifest before the registry adds name, version and artifact.

    ``preprocessing``, ``compression``, ``metrics``, ``training_job`` and ``framework`` are free-form
    JSON objects whose keys ARCHITECTURE.md describes; ``labels`` is None for regression.
    """

    schema_version: int = SCHEMA_VERSION
    created_at: str
    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...] | None = None
    preprocessing: Any
    compression: Any
    metrics: Any
    training_job: Any
    framework: Any
    extra: Mapping[str, Any] = field(default_factory=dict)
    _keys: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def from_json(cls, obj: Any) -> Draft:
        """A draft's JSON object (a job's ``manifest.json``), verified; ModelIntegrityError if it does not."""
        _raise(manifest_problems(obj, DRAFT_FIELDS))
        draft: Draft = cls._parse(obj, **_tensors(obj))
        return draft


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest(Draft):
    """A published version's manifest, verified: what serving reads (ARCHITECTURE.md, "Registry on S3")."""

    name: str
    version: str
    artifact: Artifact
    verified: Any = None  # {"onnxruntime", "at"}: the publish-time load check
    # The version's number (1, 2, 3 ...), taken at publish (ARCHITECTURE.md, "Registry layout": version
    # numbers); None in a manifest published before numbers existed.
    version_number: int | None = None

    @classmethod
    def from_json(cls, obj: Any, *, name: str | None = None, version: str | None = None) -> Manifest:
        """The manifest if its JSON object verifies (and belongs to name/version when given), else
        ModelIntegrityError with every problem found."""
        problems = manifest_problems(obj)
        if not problems and name is not None and obj["name"] != name:
            problems.append(f"name: expected {name!r}, got {obj['name']!r}")
        if not problems and version is not None and obj["version"] != version:
            problems.append(f"version: expected {version!r}, got {obj['version']!r}")
        _raise(problems)
        manifest: Manifest = cls._parse(obj, **_tensors(obj), artifact=Artifact.from_json(obj["artifact"]))
        return manifest

    def numbered(self, number: int) -> Manifest:
        """This manifest with the number the registry took for its version."""
        return replace(self, version_number=number)

    def verified_with(self, onnxruntime: str) -> Manifest:
        """This manifest once its model loaded in the serving ``onnxruntime`` (that version), now."""
        return replace(
            self, verified={"onnxruntime": onnxruntime, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        )


# -- the one graph reader -------------------------------------------------------------------------
GraphIO = tuple[list[TensorSpec], list[TensorSpec]]  # (inputs, outputs)


def graph_tensors(source: bytes | str | Path) -> GraphIO:
    """(inputs, outputs) of an ONNX model (bytes or a path): name, dtype, shape (None = free). Read
    by the serving onnxruntime, so what training and ``maas models publish`` declare is what serving
    sees; graph initialisers are not inputs."""
    session = publishable_session(source if isinstance(source, bytes) else str(source))
    return [_tensor(i) for i in session.get_inputs()], [_tensor(o) for o in session.get_outputs()]


def _tensor(node: Any) -> TensorSpec:
    dtype = BY_ORT.get(node.type)
    if dtype is None:
        raise ModelRejected(
            f"tensor {node.name!r} has type {node.type}, which MaaS cannot serve",
            expected=sorted(BY_ORT),
            received=node.type,
        )
    # onnxruntime gives a free dimension as None or its symbolic name
    return TensorSpec(node.name, dtype.name, tuple(d if isinstance(d, int) and d > 0 else None for d in node.shape))


def manifest_from_graph(
    source: bytes | str | Path,
    *,
    task: str,
    labels: list[str] | None,
    created_at: datetime | None = None,
    **fields: Any,
) -> Draft:
    """A draft read from its graph (ARCHITECTURE.md, "Manifest"), for training and for ``maas models
    publish``: ``labels`` None (regression) leaves the field out; ``fields`` are the rest
    (preprocessing, compression, metrics, training_job, framework). The registry adds name, version
    and artifact when it publishes."""
    inputs, outputs = graph_tensors(source)
    created = (created_at or datetime.now(UTC)).isoformat(timespec="seconds")
    listed = None if labels is None else tuple(labels)
    return Draft(created_at=created, task=task, inputs=tuple(inputs), outputs=tuple(outputs), labels=listed, **fields)
