"""Lazy, per-container cache of ONNX Runtime sessions, keyed by (model, version).

Nothing is downloaded at import. The first request for a version downloads it, checks its sha256
against the manifest and builds one InferenceSession sized to the function's vCPUs; later requests
reuse it. Aliases are re-resolved after a short TTL so a promote or rollback reaches warm
containers; if the registry is unreachable at that moment, the last known resolution is kept.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import MaasError, ModelIntegrityError, ModelLoadError, RegistryUnavailable
from shared.registry import DEFAULT_ALIAS, Registry, check_name, is_version
from shared.text import WordTokenizer

# Lambda allocates CPU in proportion to memory: one full vCPU per 1,769 MB, up to 6.
MB_PER_VCPU = 1769
MAX_VCPUS = 6


def lambda_vcpus(memory_mb: int | None = None) -> int:
    if memory_mb is None:
        raw = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        if not raw:
            return max(1, min(MAX_VCPUS, os.cpu_count() or 1))
        memory_mb = int(raw)
    return max(1, min(MAX_VCPUS, math.ceil(memory_mb / MB_PER_VCPU)))


@dataclass
class LoadedModel:
    name: str
    version: str
    manifest: dict[str, Any]
    session: Any
    load_ms: float
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    _tokenizers: dict[str, WordTokenizer] = field(default_factory=dict, repr=False)

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    @property
    def labels(self) -> list[str] | None:
        return self.manifest.get("labels")

    def tokenizer(self, spec: dict[str, Any]) -> WordTokenizer:
        """The tokenizer of a string input, built once per loaded model."""
        name = spec["name"]
        if name not in self._tokenizers:
            self._tokenizers[name] = WordTokenizer.from_manifest(spec["tokenizer"])
        return self._tokenizers[name]


def build_session(model_bytes: bytes, threads: int, optimized_path: Path | None = None) -> Any:
    """One CPU session. With ``optimized_path``, the graph optimised once is saved there and later
    sessions in this container (after an eviction, or after a SnapStart restore) load it as is."""
    import onnxruntime as ort  # lazily: only containers that serve a model pay for it

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source: bytes | str = model_bytes
    if optimized_path is not None:
        if optimized_path.exists():
            source = str(optimized_path)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        else:
            optimized_path.parent.mkdir(parents=True, exist_ok=True)
            # Basic-level rewrites only: extended/layout ones can be hardware-specific and
            # onnxruntime warns against saving them.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(optimized_path)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception:
        if optimized_path is not None and source != model_bytes:
            optimized_path.unlink(missing_ok=True)  # a stale or damaged cache: rebuild from the verified bytes
            return build_session(model_bytes, threads, None)
        raise


def graph_input(spec: dict[str, Any]) -> str:
    """The ONNX input a manifest input feeds: a tokenised string input feeds its token ids."""
    tokenizer = spec.get("tokenizer")
    return str(tokenizer["graph_input"]) if isinstance(tokenizer, dict) else str(spec["name"])


def _check_graph_matches_manifest(session: Any, manifest: dict[str, Any]) -> None:
    graph_inputs = {i.name for i in session.get_inputs()}
    graph_outputs = {o.name for o in session.get_outputs()}
    declared_inputs = {graph_input(i) for i in manifest["inputs"]}
    declared_outputs = {o["name"] for o in manifest["outputs"]}
    if graph_inputs != declared_inputs or not declared_outputs <= graph_outputs:
        raise ModelIntegrityError(
            "the ONNX graph does not match its manifest",
            graph_inputs=sorted(graph_inputs),
            manifest_inputs=sorted(declared_inputs),
            graph_outputs=sorted(graph_outputs),
            manifest_outputs=sorted(declared_outputs),
        )


class ModelCache:
    def __init__(
        self,
        bucket: str,
        alias_ttl_seconds: float = 30.0,
        registry: Registry | None = None,
        optimized_dir: str | None = None,
        on_load: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        self.bucket = bucket
        self.alias_ttl_seconds = alias_ttl_seconds
        self.optimized_dir = Path(optimized_dir) if optimized_dir else None
        self.on_load = on_load
        self._registry = registry
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._aliases: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = Registry(self.bucket)
        return self._registry

    def loaded(self) -> list[dict[str, Any]]:
        return [{"model": m.name, "version": m.version, "load_ms": round(m.load_ms, 1)} for m in self._models.values()]

    def resolve(self, name: str, ref: str | None = None) -> str:
        check_name(name)
        ref = ref or DEFAULT_ALIAS
        if is_version(ref):
            return ref
        key = (name, ref)
        cached = self._aliases.get(key)
        now = time.monotonic()
        if cached and now - cached[1] < self.alias_ttl_seconds:
            return cached[0]
        try:
            version = self.registry.resolve(name, ref)
        except RegistryUnavailable:
            if cached:  # keep serving what we know rather than fail every request
                return cached[0]
            raise
        self._aliases[key] = (version, now)
        return version

    def get(self, name: str, ref: str | None = None) -> LoadedModel:
        version = self.resolve(name, ref)
        key = (name, version)
        model = self._models.get(key)
        if model is not None:
            return model
        with self._lock:  # one download and one session per version, even under concurrent calls
            model = self._models.get(key)
            if model is None:
                model = self._load(name, version)
                self._models[key] = model
                if self.on_load:
                    self.on_load(model)
        return model

    def _load(self, name: str, version: str) -> LoadedModel:
        started = time.perf_counter()
        manifest = self.registry.read_manifest(name, version)
        data = self.registry.read_model(name, version, manifest)
        try:
            sha = manifest["artifact"]["sha256"]
            optimized = self.optimized_dir / f"{sha}.basic.onnx" if self.optimized_dir else None
            session = build_session(data, threads=lambda_vcpus(), optimized_path=optimized)
        except MaasError:
            raise
        except Exception as exc:
            raise ModelLoadError("onnxruntime could not load the model", model=name, version=version) from exc
        _check_graph_matches_manifest(session, manifest)
        return LoadedModel(
            name=name,
            version=version,
            manifest=manifest,
            session=session,
            load_ms=(time.perf_counter() - started) * 1000,
            input_names=[i.name for i in session.get_inputs()],
            output_names=[o.name for o in session.get_outputs()],
        )
