"""Lazy, per-container cache of ONNX Runtime sessions, keyed by (model, version).

Nothing is downloaded at import. The first request for a version downloads it into /tmp in parallel
ranged GETs, checking its size and sha256 against the manifest as the bytes arrive (``model_files.py``,
``Registry.download_model``), and builds one InferenceSession from that file, sized to the function's
vCPUs; later requests reuse it. The few most recently used sessions are kept within a memory budget; the
rest are evicted. A model the function is too small for (``sizing.py``) is refused with a 507 before
anything is downloaded or evicted.

Aliases are re-checked after a short TTL with a conditional GET on their ETag, so a promote or
rollback reaches warm containers without a redeploy; if the registry is unreachable at that moment,
or the alias object has become unreadable, the last good resolution is kept until the next check
(one warning and one AliasKeptStale metric per check, not per request). An alias with a canary
splits requests by its weight, deterministically per request id when the client gives one.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import math
import os
import random
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from maas_core.shared.errors import (
    AliasTargetMissing,
    MaasError,
    ModelIntegrityError,
    ModelLoadError,
    ModelTooLargeHere,
    RegistryUnavailable,
    VersionNotFound,
)
from maas_core.shared.manifest import Artifact, Manifest, TensorSpec
from maas_core.shared.model_check import check_session
from maas_core.shared.model_files import ModelFiles
from maas_core.shared.registry import (
    DEFAULT_ALIAS,
    AliasRecord,
    Registry,
    check_alias,
    check_name,
    is_number,
    is_version,
)
from maas_core.shared.sizing import MAX_VCPUS, MB_PER_VCPU, RUNTIME_RSS_MIB, Limits, check_fits
from maas_core.shared.text import WordTokenizer

logger = Logger(child=True)
metrics = Metrics()  # Powertools shares the metric set: the handler's log_metrics flushes it


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
    manifest: Manifest
    session: Any
    load_ms: float
    memory_bytes: int = 0
    _tokenizers: dict[str, WordTokenizer] = field(default_factory=dict, repr=False)

    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def labels(self) -> tuple[str, ...] | None:
        return self.manifest.labels

    def tokenizer(self, spec: TensorSpec) -> WordTokenizer:
        """The tokenizer of a string input, built once per loaded model."""
        if spec.name not in self._tokenizers:
            if spec.tokenizer is None:
                raise ValueError(f"input {spec.name!r} is not tokenised")
            self._tokenizers[spec.name] = WordTokenizer.from_manifest(spec.tokenizer)
        return self._tokenizers[spec.name]


def private_dir(configured: Path) -> Path | None:
    """This process owner's folder for verified model files, ``<configured>-<uid>`` with mode 0700; None (no
    cache) when it cannot be made or is not private: a link, another owner's, group- or world-writable.

    The configured folder (/tmp/maas-models) is shared by every process of a host; a file in it is
    run as the verified model, so only a folder no one else can write is trusted.
    """
    folder = configured.with_name(f"{configured.name}-{os.getuid()}")
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError:  # /tmp read-only or full: the cache is an optimisation, not a need
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        logger.warning("the model-file folder is not private: models load without it", extra={"folder": str(folder)})
        return None
    return folder


def build_session(model: bytes | str, threads: int) -> Any:
    """One CPU session from the model's path (half the peak memory of its bytes: bench/loading.py), with
    every graph optimisation onnxruntime has (fusions and the CPU's own layouts), built afresh each time.

    A session built at the basic level and saved for later loads once served here: it ran the digits CNN
    up to 10x slower (int8-static at batch 1, 0.198 vs 0.020 ms; fp32 at 32, 0.67 vs 0.35) to save ~1 ms of
    build, and writing it doubled a cold load's peak memory (bench/results.md, onnxruntime settings)."""
    import onnxruntime as ort  # lazily: only containers that serve a model pay for it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the system before a session is built (glibc's ``malloc_trim``).

    The download's part buffers were allocated and freed by its worker threads, and glibc gives back by
    itself only the free memory at the top of a heap: without this the rest stays resident under the
    session's own peak (``make bench-large``). Elsewhere (musl, macOS) it does nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


# glibc's mallopt parameter for the number of malloc arenas (malloc.h: M_ARENA_MAX).
M_ARENA_MAX = -8


def share_one_malloc_arena() -> None:
    """Have every thread of this process allocate from glibc's one main arena (``mallopt(M_ARENA_MAX, 1)``).

    glibc gives each new thread that allocates its own arena; memory freed in one arena is not reused by
    another. The preload thread (``preload.py``) builds its session while the handler's imports run, and
    the download's worker threads fill their part buffers: each in its own arena, beside what the imports
    freed in the main one. Measured with the ladder's 10 MiB transformer (ApiFunction, the sam build
    package): a preloaded cold request peaked at 150 MiB against 143 loaded by the request, and 139 and
    140 with one arena (126 and 120 split). Lambda runs one request at a time per environment, and
    onnxruntime's threads allocate from its own arena while they run, so one malloc arena costs no
    contention worth having a second. Only threads that have not allocated yet are affected: call it before
    any is started. Elsewhere (musl, macOS) it does nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)


def freeze_long_lived() -> None:
    """Put every object alive now beyond the garbage collector's reach (``gc.freeze``).

    The imports, the S3 client and each loaded model's objects live as long as the environment, and each
    full collection walked them all again: with 32 digits per request (about 2,000 new numbers each), one
    request in ~50 paused ~90 ms, p99 ~45x p50 (bench/results.md, the tail). Called at the end of INIT and
    after each model load; what a request creates is collected as before, and refcounting still frees a
    frozen object (an evicted session) once nothing holds it."""
    gc.freeze()


@contextlib.contextmanager
def making_long_lived() -> Iterator[None]:
    """No collection while the objects made are ones that live as long as the environment (the S3 client, a
    model's session), then those frozen (:func:`freeze_long_lived`). Each collection would have walked them to
    find nothing to free: the handler's import with no collection takes ~10 ms less, the first request's S3
    client and onnxruntime import ~9 ms less (timed with and without collection: python3.12, the sam build
    package; ~150 collections). The handler's module does the same around its whole import (INIT)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        long_lived_made(resume=was_enabled)


# The young generation's threshold (CPython's default 700): a request's parsed body is thousands of lists alive
# at once (32 digits, ~2,300), so at 700 each such request ran a few collections that only aged the body, and
# every tenth a collection of the older generation; refcounting frees all of it when the request ends. Measured
# on the handler in-process (32 digits, the digits CNN): p50 0.565 -> 0.500 ms, p99 1.43 -> 0.62 ms at 10,000;
# a batch of 1 is unchanged. Cyclic garbage waits for 10,000 new containers (a few hundred KiB) to be collected.
YOUNG_COLLECTION_THRESHOLD = 10_000


def long_lived_made(resume: bool = True) -> None:
    """The end of a pause in collection (INIT's, or :func:`making_long_lived`'s): what was made frozen, the
    young generation collected at :data:`YOUNG_COLLECTION_THRESHOLD`, and collection back on unless an outer
    pause still holds it."""
    freeze_long_lived()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
    if resume:
        gc.enable()


def rss_bytes() -> int:
    """Resident memory of this process (Linux), 0 where /proc is not there."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def default_budget_bytes() -> int:
    """Half the function's memory for sessions, unless MODEL_CACHE_MB says otherwise."""
    raw = os.environ.get("MODEL_CACHE_MB")
    if raw:
        return int(float(raw) * 2**20)
    memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 2048)
    return memory_mb * 2**20 // 2


def canary_share(alias: str, request_id: str) -> float:
    """Where a request id falls in [0, 1): the same id always lands in the same place."""
    digest = hashlib.sha256(f"{alias}:{request_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class Route:
    """What an alias (or an exact version) sends traffic to."""

    version: str
    canary_version: str | None = None
    canary_weight: float = 0.0
    etag: str | None = None

    @classmethod
    def of(cls, record: AliasRecord) -> Route:
        return cls(record.version, record.canary_version, record.canary_weight, record.etag)

    def pick(self, alias: str, request_id: str | None) -> tuple[str, str]:
        """(version, variant): variant is "stable" or "canary" for an alias, "pinned" for a version."""
        if self.etag is None:
            return self.version, "pinned"
        if self.canary_version and self.canary_weight > 0:
            share = canary_share(alias, request_id) if request_id else random.random()  # noqa: S311 - not crypto
            if share < self.canary_weight:
                return self.canary_version, "canary"
        return self.version, "stable"


class ModelCache:
    def __init__(
        self,
        bucket: str,
        alias_ttl_seconds: float = 30.0,
        registry: Registry | None = None,
        optimized_dir: str | None = None,
        on_load: Callable[[LoadedModel], None] | None = None,
        budget_bytes: int | None = None,
        retry_after_seconds: float = 5.0,
        storage_budget_bytes: int | None = None,
    ) -> None:
        self.bucket = bucket
        self.alias_ttl_seconds = alias_ttl_seconds
        self.optimized_dir = Path(optimized_dir) if optimized_dir else None
        self.on_load = on_load
        self.budget_bytes = budget_bytes if budget_bytes is not None else default_budget_bytes()
        self.retry_after_seconds = retry_after_seconds
        self.storage_budget_bytes = storage_budget_bytes  # None: the function's ephemeral storage (model_files.py)
        self._registry = registry
        self._models: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._routes: dict[tuple[str, str], tuple[Route, float]] = {}
        # (model, number) -> version: a number's object is written once and never changed, so kept for good.
        self._numbers: dict[tuple[str, str], str] = {}
        self._failures: dict[tuple[str, str], tuple[MaasError, float]] = {}
        self._lock = threading.Lock()
        share_one_malloc_arena()  # before the preload thread and the download's workers allocate

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            with making_long_lived():  # the S3 client
                self._registry = Registry(self.bucket)
        return self._registry

    def loaded(self) -> list[dict[str, Any]]:
        return [
            {"model": m.name, "version": m.version, "load_ms": round(m.load_ms, 1), "memory_mb": m.memory_bytes >> 20}
            for m in self._models.values()
        ]

    def renew(self) -> None:
        """After a SnapStart restore: a new S3 client, and every alias re-checked on its next use."""
        self._registry = None
        self._routes.clear()

    # -- aliases ---------------------------------------------------------------------------
    def route(self, name: str, ref: str | None = None) -> Route:
        """The route of an alias (cached for the TTL, then re-checked by ETag), of an exact version, or of a
        version's number (pinned to the version that took it)."""
        check_name(name)
        ref = ref or DEFAULT_ALIAS
        if is_version(ref):
            return Route(ref)
        if is_number(ref):
            if (name, ref) not in self._numbers:
                self._numbers[(name, ref)] = self.registry.exact_version(name, ref)  # 404 when no version took it
            return Route(self._numbers[(name, ref)])
        key = (name, check_alias(ref))
        cached = self._routes.get(key)
        now = time.monotonic()
        if cached and now - cached[1] < self.alias_ttl_seconds:
            return cached[0]
        try:
            if cached and cached[0].etag:
                changed = self.registry.alias_changed(name, ref, cached[0].etag)
                route = Route.of(changed) if changed else cached[0]
            else:
                route = Route.of(self.registry.read_alias(name, ref))
        except (RegistryUnavailable, ModelIntegrityError) as error:
            if not cached:
                raise
            # Keep serving the last good resolution (ARCHITECTURE.md, Serving: the container keeps serving
            # what it holds), and ask again after another TTL, not on every request.
            self._routes[key] = (cached[0], now)
            logger.warning(
                "alias could not be re-checked; serving its last good resolution until the next check",
                extra={"model": name, "alias": ref, "version": cached[0].version, "code": error.code},
            )
            metrics.add_metric(name="AliasKeptStale", unit=MetricUnit.Count, value=1)
            return cached[0]
        self._routes[key] = (route, now)
        return route

    def resolve(self, name: str, ref: str | None = None) -> str:
        """The version an alias names (its stable version, never the canary), the exact version given, or the
        version a number names."""
        return self.route(name, ref).version

    # -- sessions --------------------------------------------------------------------------
    def get(self, name: str, ref: str | None = None) -> LoadedModel:
        """The model of an alias's stable version or of an exact version (a batch file pins this one)."""
        route = self.route(name, ref)
        return self.load_picked(name, ref, route.version, "pinned" if route.etag is None else "stable")

    def pick(self, name: str, ref: str | None = None, request_id: str | None = None) -> tuple[str, str]:
        """(version, variant: stable, canary or pinned) for one request, before anything is loaded.

        With a canary on the alias, the request goes to the canary with the canary's weight: by the
        hash of ``request_id`` when the client sent one (the same id, the same version), else at random.
        """
        return self.route(name, ref).pick(ref or DEFAULT_ALIAS, request_id)

    def load_picked(self, name: str, ref: str | None, version: str, variant: str) -> LoadedModel:
        """Load what :meth:`pick` chose; a version an alias names but the registry lacks is a 503."""
        try:
            return self.load(name, version)
        except VersionNotFound:
            if variant == "pinned":
                raise
            raise AliasTargetMissing(
                f"alias {ref or DEFAULT_ALIAS!r} of model {name!r} names version {version!r}, which is not in the "
                "registry; point the alias at an existing version",
                model=name,
                alias=ref or DEFAULT_ALIAS,
                version=version,
            ) from None

    def load(self, name: str, version: str) -> LoadedModel:
        key = (name, version)
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        with self._lock:  # one download and one session per version, even under concurrent calls
            model = self._models.get(key)
            if model is None:
                self._raise_recent_failure(key)
                try:
                    with making_long_lived():
                        model = self._load(name, version)
                except MaasError as error:
                    if error.status >= 500:  # a broken version is not downloaded again on every request
                        self._failures[key] = (error, time.monotonic())
                    raise
                self._failures.pop(key, None)
                self._models[key] = model
                self._evict(keep=key)
                if self.on_load:
                    self.on_load(model)
            else:
                self._models.move_to_end(key)
        return model

    def _raise_recent_failure(self, key: tuple[str, str]) -> None:
        failure = self._failures.get(key)
        if failure and time.monotonic() - failure[1] < self.retry_after_seconds:
            error = failure[0]
            raise type(error)(error.message, **error.details)

    def _evict(self, keep: tuple[str, str]) -> None:
        """Drop least recently used sessions until the rest fit the budget; the newest always stays."""
        while sum(m.memory_bytes for m in self._models.values()) > self.budget_bytes:
            oldest = next(iter(self._models))
            if oldest == keep:
                break
            del self._models[oldest]

    def _make_memory_room(self, name: str, artifact: Artifact) -> None:
        """Refuse (507 ``model_too_large``, nothing evicted) a model this function is too small to load; else
        evict least recently used sessions until its cold load's peak fits beside what stays. A split model is
        sized as publish sized it (graph and weights, at the split slope)."""
        limits = Limits.of_this_function()
        if limits is None:
            return
        external = artifact.external_data.size_bytes if artifact.external_data else 0
        needs = check_fits(artifact.size_bytes, limits, model=name, error=ModelTooLargeHere, external_bytes=external)
        added = (needs.memory_mb - RUNTIME_RSS_MIB) * 2**20
        while self._models and rss_bytes() + added > limits.memory_mb * 2**20:
            self._models.popitem(last=False)
            gc.unfreeze()  # a cycle the evicted model left is collected too; the load freezes again
            gc.collect()

    def _load(self, name: str, version: str) -> LoadedModel:
        started = time.perf_counter()
        manifest = self.registry.read_manifest(name, version)
        artifact = manifest.artifact
        size = artifact.total_bytes
        self._make_memory_room(name, artifact)
        folder = private_dir(self.optimized_dir) if self.optimized_dir else None
        files = ModelFiles(folder, self.storage_budget_bytes)
        # The files are downloaded (ranged GETs, hashed as they arrive) unless verified copies are on disk.
        with files.local(self.registry, name, version, manifest) as path:
            release_freed_memory()
            rss_before = rss_bytes()
            try:
                session = build_session(str(path), threads=lambda_vcpus())
            except Exception as exc:
                raise ModelLoadError("onnxruntime could not load the model", model=name, version=version) from exc
        check_session(session, manifest)
        return LoadedModel(
            name=name,
            version=version,
            manifest=manifest,
            session=session,
            load_ms=(time.perf_counter() - started) * 1000,
            # What the session holds: at least its weights, more where onnxruntime's arenas grew.
            memory_bytes=max(size, rss_bytes() - rss_before),
        )
