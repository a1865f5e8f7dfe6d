"""The S3 model registry: the contract between training and serving (see ARCHITECTURE.md).

The keys (``models/<name>/<version>/model.onnx``, a split model's ``model.onnx.data``, ``manifest.json``,
``aliases/``, ``history/``, ``numbers/``) are built and parsed in ``shared.layout``. Versions are written once
(conditional put) with the manifest last, so a version is visible only when all its objects exist.
Aliases are rewritten with compare-and-swap on their ETag. Each version takes a number (1, 2, 3 ...) at
publish, by a conditional put of ``numbers/<n>.json``: wherever a version is accepted, its number is too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

from maas_core.shared.errors import (
    AliasConflict,
    AliasNotFound,
    AliasUnreadable,
    InvalidRequest,
    ModelIntegrityError,
    ModelNotFound,
    ModelRejected,
    RegistryUnavailable,
    VersionCorrupt,
    VersionExists,
    VersionInUse,
    VersionNotFound,
)
from maas_core.shared.layout import (
    DATA_FILE,
    MODEL_FILE,
    MODELS_PREFIX,
    NAME_RE,
    S3Outcome,
    alias_key,
    alias_of,
    aliases_prefix,
    check_alias,
    check_name,
    check_version,
    data_key,
    history_key,
    history_prefix,
    is_number,
    is_version,
    manifest_key,
    model_key,
    model_prefix,
    number_key,
    number_of,
    numbers_prefix,
    s3_outcome,
    version_of,
)
from maas_core.shared.manifest import Artifact, Draft, ExternalData, Manifest
from maas_core.shared.model_check import check_publishable, load_problems
from maas_core.shared.sizing import Limits, check_fits

DEFAULT_ALIAS = "production"
KEEP: Any = object()  # update_alias: leave the canary as it is
# How many numbers one publish may find taken by racing publishers before it gives up (503).
MAX_NUMBER_TRIES = 1000


def new_version(model_bytes: bytes, now: datetime | None = None, *, weights_sha256: str | None = None) -> str:
    """A sortable, unique version id: UTC time plus the start of the model's sha256 (a split model's weights':
    its graph is the same bytes for every training of one architecture)."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S}Z-{(weights_sha256 or hashlib.sha256(model_bytes).hexdigest())[:8]}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class AliasRecord:
    """An alias object: the version it names and, for a canary rollout, a second version with its share."""

    name: str
    alias: str
    version: str
    etag: str
    body: dict[str, Any]

    @property
    def canary_version(self) -> str | None:
        canary = self.body.get("canary")
        return str(canary["version"]) if canary else None

    @property
    def canary_weight(self) -> float:
        canary = self.body.get("canary")
        return float(canary["weight"]) if canary else 0.0


def check_weight(weight: float) -> float:
    if not isinstance(weight, int | float) or not 0 < weight < 1:
        raise InvalidRequest(
            "canary weight must be a fraction of traffic between 0 and 1 (exclusive)",
            expected="0 < weight < 1",
            received=weight,
        )
    return float(weight)


def _parse_alias(name: str, alias: str, raw: bytes, etag: str) -> AliasRecord:
    try:
        body = json.loads(raw)
        version = check_version(body["version"])
        if body.get("canary"):
            check_version(body["canary"]["version"])
            check_weight(body["canary"]["weight"])
    except Exception as exc:
        raise ModelIntegrityError(
            "alias object is unreadable; a change that gives a version replaces it", model=name, alias=alias
        ) from exc
    return AliasRecord(name=name, alias=alias, version=version, etag=etag, body=body)


def _unreadable(name: str, alias: str, found: dict[str, Any], what: str) -> AliasUnreadable:
    return AliasUnreadable(
        f"alias {alias!r} of model {name!r} cannot be read, so {what}; give a version to replace the alias",
        expected="a change with a version",
        model=name,
        alias=alias,
        etag=found["etag"],
    )


@dataclass(frozen=True)
class _Weights:
    """A split model's weights offered for publishing: their file, read once here for its sha256 and size,
    then streamed to S3 (a 400 MiB file is never held in memory)."""

    path: Path
    sha256: str
    size_bytes: int

    @classmethod
    def of(cls, path: Path) -> _Weights:
        with path.open("rb") as file:
            sha256 = hashlib.file_digest(file, "sha256").hexdigest()
            return cls(path, sha256, os.fstat(file.fileno()).st_size)

    def to_json(self) -> dict[str, Any]:
        return {"file": DATA_FILE, "sha256": self.sha256, "size_bytes": self.size_bytes}


def _split_publishable(graph: bytes, weights: _Weights, manifest: Manifest) -> str:
    """``check_publishable`` for a split model: onnxruntime finds the weights beside the graph's path only,
    so both go into one fresh folder (the weights linked, or copied across filesystems) and load from there.
    Nothing but ``model.onnx.data`` is in it, so a graph naming any other file does not load."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="maas-publish-") as folder:
        path = Path(folder) / MODEL_FILE
        path.write_bytes(graph)
        try:
            os.link(weights.path, path.with_name(DATA_FILE))
        except OSError:
            shutil.copyfile(weights.path, path.with_name(DATA_FILE))
        problems = load_problems(str(path), manifest)
    if problems:
        raise ModelRejected(
            "the split ONNX model does not load with its weights or does not match the manifest", problems=problems
        )
    return str(ort.__version__)


class _TooLong(Exception):
    """More bytes came than the manifest's size (the object changed after its size was read)."""


class _HashingSink:
    """Where the transfer manager writes model.onnx: counted and hashed as the bytes arrive, so the file
    is never read a second time. Not seekable, so s3transfer hands the ranged parts over in order."""

    def __init__(self, file: BinaryIO, expected_size: int) -> None:
        self.file = file
        self.expected_size = expected_size
        self.size = 0
        self.digest = hashlib.sha256()

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.expected_size:
            raise _TooLong
        self.digest.update(data)
        return self.file.write(data)


class _KnownSize:
    """Tells the transfer manager the size already read, so it does not ask S3 a second time (an
    s3transfer subscriber: only the hooks it has are called)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self.size)


class Registry:
    """Reads and writes models in one bucket. Every S3 failure becomes a domain error."""

    def __init__(self, bucket: str, s3: Any = None) -> None:
        if not bucket:
            raise ValueError("Registry needs a bucket name")
        self.bucket = bucket
        if s3 is None:
            from maas_core.shared.aws import s3_client

            s3 = s3_client()
        self.s3 = s3
        # (model, number) -> version: a number object is written once and never changed or deleted, so
        # one read per container serves every later status, metadata or pinned request.
        self._numbers_read: dict[tuple[str, int], str] = {}

    # -- reading ---------------------------------------------------------------------------
    def _get(self, key: str) -> tuple[bytes, str]:
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
            return response["Body"].read(), response["ETag"]
        except Exception as exc:
            if s3_outcome(exc) is S3Outcome.MISSING:
                raise KeyError(key) from exc
            raise RegistryUnavailable("the model registry could not be read", key=key) from exc

    def _list_prefixes(self, prefix: str) -> list[str]:
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            found: list[str] = []
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                found += [p["Prefix"][len(prefix) : -1] for p in page.get("CommonPrefixes", [])]
            return found
        except Exception as exc:
            raise RegistryUnavailable("the model registry could not be listed", prefix=prefix) from exc

    def _list_keys(self, prefix: str, what: str = "the model registry") -> list[str]:
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            return [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        except Exception as exc:
            raise RegistryUnavailable(f"{what} could not be listed", prefix=prefix) from exc

    def list_models(self) -> list[str]:
        return sorted(n for n in self._list_prefixes(MODELS_PREFIX) if NAME_RE.fullmatch(n))

    def list_versions(self, name: str) -> list[str]:
        """Versions whose manifest exists: the manifest is written last, so this is what is visible."""
        versions = (version_of(name, key) for key in self._list_keys(model_prefix(name)))
        return sorted(v for v in versions if v)

    def alias_records(self, name: str) -> dict[str, AliasRecord]:
        records = {}
        for key in self._list_keys(aliases_prefix(name)):
            alias = alias_of(name, key)
            if alias:
                try:
                    records[alias] = self.read_alias(name, alias)
                except (AliasNotFound, ModelIntegrityError):
                    continue
        return records

    def list_aliases(self, name: str) -> dict[str, str]:
        return {alias: record.version for alias, record in self.alias_records(name).items()}

    def list_canaries(self, name: str) -> dict[str, dict[str, Any]]:
        """Aliases that split traffic: {alias: {"version": ..., "weight": ...}}."""
        return {alias: r.body["canary"] for alias, r in self.alias_records(name).items() if r.canary_version}

    def _version_not_found(self, name: str, version: str, what: str) -> ModelNotFound | VersionNotFound:
        if not self.list_versions(name) and not self.list_aliases(name):
            return ModelNotFound(f"no model named {name!r}", model=name)
        return VersionNotFound(f"model {name!r} has no {what}", model=name, version=version)

    def read_manifest(self, name: str, version: str) -> Manifest:
        try:
            raw, _ = self._get(manifest_key(name, version))
        except KeyError:
            raise self._version_not_found(name, version, f"version {version!r}") from None
        try:
            manifest = json.loads(raw)
        except ValueError as exc:
            raise ModelIntegrityError("model manifest is not valid JSON", model=name, version=version) from exc
        return Manifest.from_json(manifest, name=name, version=version)

    def alias_changed(self, name: str, alias: str, etag: str) -> AliasRecord | None:
        """The alias if its ETag is no longer ``etag``, else None: a cheap conditional GET for warm caches."""
        try:
            self.s3.get_object(Bucket=self.bucket, Key=alias_key(name, alias), IfNoneMatch=etag)
        except Exception as exc:
            if s3_outcome(exc) is S3Outcome.NOT_MODIFIED:
                return None
            if s3_outcome(exc) is not S3Outcome.MISSING:
                raise RegistryUnavailable("the model registry could not be read", key=alias_key(name, alias)) from exc
        return self.read_alias(name, alias)

    def read_alias(self, name: str, alias: str) -> AliasRecord:
        try:
            raw, etag = self._get(alias_key(name, alias))
        except KeyError:
            if alias == DEFAULT_ALIAS and not self.list_versions(name):
                raise ModelNotFound(f"no model named {name!r}", model=name) from None
            raise AliasNotFound(f"model {name!r} has no alias {alias!r}", model=name, alias=alias) from None
        return _parse_alias(name, alias, raw, etag)

    def _alias_state(self, name: str, alias: str) -> tuple[AliasRecord | None, dict[str, Any] | None]:
        """(the alias, None); (None, what is there) when its object is unreadable; (None, None) when absent."""
        try:
            raw, etag = self._get(alias_key(name, alias))
        except KeyError:
            return None, None
        try:
            return _parse_alias(name, alias, raw, etag), None
        except ModelIntegrityError:
            note = "the alias object was unreadable (not JSON, or no valid version); this change replaced it"
            return None, {"etag": etag, "size_bytes": len(raw), "note": note}

    def resolve(self, name: str, ref: str | None = None) -> str:
        """Turn an alias, an exact version or a version's number (default: the production alias) into a version."""
        check_name(name)
        ref = ref or DEFAULT_ALIAS
        if is_version(ref) or is_number(ref):
            return self.exact_version(name, ref)
        return self.read_alias(name, check_alias(ref)).version

    # -- version numbers (ARCHITECTURE.md, "Registry layout": version numbers) -------------------
    def exact_version(self, name: str, ref: str) -> str:
        """The version ``ref`` names: itself, or the version that took the number ``ref`` (404 when none did).
        A deleted version's number still names it, so it answers as the deleted version does."""
        check_name(name)
        if not is_number(ref):
            return check_version(ref)
        version = self._numbered(name, int(ref))
        if version is None:
            raise self._version_not_found(name, ref, f"version number {ref}")
        return version

    def _numbered(self, name: str, number: int) -> str | None:
        """The version that took ``number``, None when no version did (not kept: it may be taken later)."""
        known = self._numbers_read.get((name, number))
        if known is not None:
            return known
        try:
            raw, _ = self._get(number_key(name, number))
        except KeyError:
            return None
        try:
            version = check_version(json.loads(raw)["version"])
        except Exception as exc:
            raise ModelIntegrityError("version number object is unreadable", model=name, number=number) from exc
        self._numbers_read[(name, number)] = version
        return version

    def version_numbers(self, name: str) -> dict[int, str]:
        """Every number taken, lowest first, and the version it names (deleted versions' included)."""
        listed = (number_of(name, key) for key in self._list_keys(numbers_prefix(name)))
        numbers = sorted(n for n in listed if n)
        with ThreadPoolExecutor(max_workers=8) as pool:  # one small GET each
            versions = list(pool.map(lambda n: self._numbered(name, n), numbers))
        return {n: v for n, v in zip(numbers, versions, strict=True) if v}

    def number_of(self, manifest: Manifest) -> int | None:
        """A version's number: its manifest's, or, for a version published before numbers, the one its
        model's next publish gave it (None until then)."""
        if manifest.version_number is not None:
            return manifest.version_number
        found = (n for n, v in self.version_numbers(manifest.name).items() if v == manifest.version)
        return next(found, None)

    def numbered_versions(self, name: str) -> list[dict[str, Any]]:
        """The visible versions, oldest first, each with its number (None: published before numbers)."""
        numbers = {v: n for n, v in self.version_numbers(name).items()}
        return [{"version": v, "number": numbers.get(v)} for v in self.list_versions(name)]

    def _take_number(self, name: str, version: str, taken: dict[int, str]) -> int:
        """The next number for ``version``, by a conditional put of its object (If-None-Match: *): a racing
        publisher's number is skipped, one that already names ``version`` is kept. ``taken`` (number ->
        version, as last read) is updated. Numbers are only ever taken lowest free first and never
        deleted, so they stay 1..n without a gap, and walking up from the last one read meets every
        number taken since."""
        number = max(taken, default=0) + 1
        for _ in range(MAX_NUMBER_TRIES):
            try:
                body = json.dumps({"version": version}).encode()
                self._put(number_key(name, number), body, "application/json", IfNoneMatch="*")
            except RegistryUnavailable:
                raise
            except Exception:
                holder = self._numbered(name, number)
                if holder is None:
                    continue  # the conflicting write had not landed yet: try the same number again
                taken[number] = holder
                if holder == version:
                    return number
                number += 1
                continue
            taken[number] = version
            return number
        raise RegistryUnavailable("no version number could be taken: too many concurrent publishes", model=name)

    def number_versions(self, name: str, existing: list[str] | None = None) -> dict[int, str]:
        """Number, oldest first, every version published before numbers existed (their ids sort by
        publication time), so numbers follow publication order; every number taken, as version_numbers.
        A publish does this first; ``maas models number`` does it without one."""
        taken = self.version_numbers(name)
        numbered = set(taken.values())
        for earlier in sorted(v for v in (self.list_versions(name) if existing is None else existing)):
            if earlier not in numbered:
                self._take_number(name, earlier, taken)
        return taken

    def _number_new_version(self, name: str, version: str, existing: list[str]) -> int:
        """Number ``version`` after every earlier version (number_versions)."""
        return self._take_number(name, version, self.number_versions(name, existing))

    def download_model(self, name: str, version: str, manifest: Manifest, path: Path) -> None:
        """Download model.onnx to ``path`` and, for a split version, its weights beside it as
        ``model.onnx.data`` (the name its graph gives onnxruntime), each in parallel ranged GETs checked
        against the manifest's size and sha256 as it arrives; ModelIntegrityError (503) when one differs.
        The files are there only when this returns: on any error both are removed."""
        artifact = manifest.artifact
        files: list[tuple[str, Artifact | ExternalData, Path]] = [(model_key(name, version), artifact, path)]
        if artifact.external_data is not None:
            files.append((data_key(name, version), artifact.external_data, path.with_name(DATA_FILE)))
        try:
            for key, described, target in files:
                problems, received = self._download_checked(key, described, target)
                if problems:
                    raise ModelIntegrityError(
                        "model file does not match its manifest (size or sha256)",
                        model=name,
                        version=version,
                        problems=problems,
                        file=target.name,
                        expected_sha256=described.sha256,
                        expected_size=described.size_bytes,
                        received_size=received,
                    )
        except BaseException:
            for _, _, target in files:
                target.unlink(missing_ok=True)
            raise

    def read_model(self, name: str, version: str, manifest: Manifest) -> bytes:
        """model.onnx as bytes, checked as :meth:`download_model` checks it (for tools; serving loads the file).
        A split version's graph only: its weights are checked too, then left in their file."""
        with tempfile.TemporaryDirectory(prefix="maas-read-") as folder:
            path = Path(folder) / MODEL_FILE
            self.download_model(name, version, manifest, path)
            return path.read_bytes()

    def verify_version(self, name: str, version: str) -> Manifest:
        """The manifest of a version an alias may name, once its model.onnx is checked as serving would:
        there, of the manifest's size and sha256, loading in this onnxruntime with the manifest's
        inputs and outputs (ARCHITECTURE.md, Registry: aliases refuse a version that does not verify).
        """
        manifest = self.read_manifest(name, version)
        with tempfile.TemporaryDirectory(prefix="maas-verify-") as folder:
            path = Path(folder) / MODEL_FILE
            try:
                self.download_model(name, version, manifest, path)  # a split version's weights beside it
                problems = load_problems(str(path), manifest)
            except ModelIntegrityError as error:
                problems = list(error.details["problems"])
        if problems:
            raise VersionCorrupt(
                f"version {version!r} of model {name!r} cannot be served, so no alias may name it: {problems[0]}; "
                "publish it again as a new version",
                model=name,
                version=version,
                problems=problems,
            )
        return manifest

    def _download_checked(self, key: str, artifact: Artifact | ExternalData, path: Path) -> tuple[list[str], int]:
        """Download an object to ``path`` while hashing it: what differs from ``artifact`` (model.onnx's, or a
        split model's weights'), as sentences, and the size the object has (or the bytes read before it was
        found too long).

        One HEAD gives the size, refused before any byte is read when it is not the manifest's; then
        s3transfer's transfer manager fetches parts of ``MODEL_PART_BYTES`` in parallel (``aws.py``: the
        client's timeouts and retries bound each), and the sink hashes them in order as they are written.
        """
        from s3transfer.manager import TransferManager  # lazily: ~0.2 s of imports a cold start needs only here

        from maas_core.shared.aws import model_transfer_config

        expected, what = artifact.size_bytes, key.rsplit("/", 1)[-1]
        try:
            size = int(self.s3.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except Exception as exc:
            if s3_outcome(exc) is S3Outcome.MISSING:
                return [f"{what} is missing"], 0
            raise RegistryUnavailable("the model registry could not be read", key=key) from exc
        if size != expected:
            return [f"{what} has {size} bytes, the manifest says {expected}"], size
        with path.open("wb") as file:
            sink = _HashingSink(file, expected)
            try:
                with TransferManager(self.s3, model_transfer_config()) as transfer:
                    transfer.download(
                        self.bucket, key, cast(BinaryIO, sink), subscribers=[cast(Any, _KnownSize(expected))]
                    ).result()
            except _TooLong:
                return [f"{what} has more than the {expected} bytes the manifest says"], sink.size
            except Exception as exc:
                if s3_outcome(exc) is S3Outcome.MISSING:
                    return [f"{what} is missing"], 0
                raise RegistryUnavailable("the model registry could not be read", key=key) from exc
        if sink.size != expected:
            return [f"{what} has {sink.size} bytes, the manifest says {expected}"], sink.size
        if sink.digest.hexdigest() != artifact.sha256:
            return [f"{what} has sha256 {sink.digest.hexdigest()}, the manifest says {artifact.sha256}"], size
        return [], size

    # -- writing ---------------------------------------------------------------------------
    def _put(self, key: str, body: bytes | BinaryIO, content_type: str, **conditions: str) -> str:
        try:
            response = self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **conditions
            )
            return str(response["ETag"])
        except Exception as exc:
            if s3_outcome(exc) is S3Outcome.PRECONDITION_FAILED:
                raise
            raise RegistryUnavailable("the model registry could not be written", key=key) from exc

    def _put_new(self, name: str, version: str, key: str, body: bytes | BinaryIO, content_type: str) -> None:
        """One object of a new version, written only if absent (a version is immutable)."""
        try:
            self._put(key, body, content_type, IfNoneMatch="*")
        except RegistryUnavailable:
            raise
        except Exception as exc:
            raise VersionExists(
                f"model {name!r} version {version!r} already exists", model=name, version=version
            ) from exc

    def publish(
        self,
        name: str,
        model_bytes: bytes,
        draft: Draft | Mapping[str, Any],
        *,
        external_data: Path | None = None,
        version: str | None = None,
        alias_on_first_publish: str | None = DEFAULT_ALIAS,
        actor: str = "maas",
        limits: Limits | None = None,
    ) -> Manifest:
        """Write a new immutable version and return its final manifest.

        The draft (typed, or its JSON object as a trainer wrote it) lacks the fields only the
        registry knows (name, version, artifact); they are filled in, the whole is verified,
        and the objects are written with If-None-Match so an existing version is never overwritten:
        a split model's weights first (``external_data``: the path of the ``model.onnx.data`` that
        ``model_bytes``, its graph, names; streamed, not read into memory), then model.onnx, then
        manifest.json last, recording the number the version took (``numbers/<n>.json``, taken just before
        it). On the first publish of a model, ``alias_on_first_publish`` is created
        pointing at the new version. With ``limits`` (the serving function's memory and ephemeral
        storage), a model that needs more is refused (422 ``model_too_large``) before anything is read or
        written, rather than failing its first request.
        """
        check_name(name)
        weights = _Weights.of(Path(external_data)) if external_data is not None else None
        if limits is not None:
            check_fits(len(model_bytes), limits, model=name, external_bytes=weights.size_bytes if weights else 0)
        version = check_version(version or new_version(model_bytes, weights_sha256=weights.sha256 if weights else None))
        fields = draft.to_json() if isinstance(draft, Draft) else dict(draft)
        fields.pop("version_number", None)  # the registry's to give, below
        artifact: dict[str, Any] = {
            "file": MODEL_FILE,
            "sha256": sha256_hex(model_bytes),
            "size_bytes": len(model_bytes),
        }
        if weights is not None:
            artifact["external_data"] = weights.to_json()
        final = {**fields, "name": name, "version": version, "artifact": artifact}
        final.setdefault("created_at", datetime.now(UTC).isoformat(timespec="seconds"))
        manifest = Manifest.from_json(final, name=name, version=version)
        existing = self.list_versions(name)
        first_publish = not existing
        if version in existing:
            raise VersionExists(f"model {name!r} version {version!r} already exists", model=name, version=version)
        # Loads in the serving onnxruntime and matches the manifest's schema, or nothing is written.
        checked = (
            check_publishable(model_bytes, manifest)
            if weights is None
            else _split_publishable(model_bytes, weights, manifest)
        )
        manifest = manifest.verified_with(checked)
        if weights is not None:
            with weights.path.open("rb") as body:
                self._put_new(name, version, data_key(name, version), body, "application/octet-stream")
        self._put_new(name, version, model_key(name, version), model_bytes, "application/octet-stream")
        # Taken once the model's bytes are in place and before the manifest that records it: a publish that
        # stops between the two leaves a number naming no version, which answers 404 as a deleted one does.
        manifest = manifest.numbered(self._number_new_version(name, version, existing))
        manifest_json = json.dumps(manifest.to_json(), indent=2).encode()
        self._put_new(name, version, manifest_key(name, version), manifest_json, "application/json")
        if first_publish and alias_on_first_publish:
            # Another publisher may have set it first; theirs stands. The bytes were checked above.
            with contextlib.suppress(AliasConflict):
                self._write_alias(
                    name,
                    check_alias(alias_on_first_publish),
                    version,
                    None,
                    expected_etag=None,
                    current=None,
                    actor=actor,
                    reason="first publish",
                )
        return manifest

    def set_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        expected_etag: str | None,
        actor: str = "maas",
        reason: str = "",
        canary: dict[str, Any] | None = None,
    ) -> AliasRecord:
        """Point an alias at a verified version (and optionally a canary version with a share), atomically.

        ``expected_etag=None`` means the alias must not exist yet; otherwise the write succeeds
        only if the alias still has that ETag, so two concurrent changes cannot both win. An alias
        object that cannot be read is replaced, and the history keeps what was there.
        A version the alias does not already name in that role is checked first (:meth:`verify_version`).
        """
        check_alias(alias)
        version = self.exact_version(name, version)
        current, unreadable = self._alias_state(name, alias) if expected_etag is not None else (None, None)
        if canary is not None:
            canary = {"version": self.exact_version(name, canary["version"]), "weight": check_weight(canary["weight"])}
            if canary["version"] == version:
                raise InvalidRequest(
                    "the canary version must differ from the alias's version", expected="another version"
                )
        # A version already named in the same role was checked when it was named: re-weighting or ending a
        # canary downloads nothing, so the canary guard never waits on a model.
        self._check_target(name, version, named=current.version if current else None)
        if canary is not None:
            self._check_target(name, canary["version"], named=current.canary_version if current else None)
        if expected_etag is not None and current is None and unreadable is None:
            raise AliasNotFound(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)
        return self._write_alias(
            name,
            alias,
            version,
            canary,
            expected_etag=expected_etag,
            current=current,
            unreadable=unreadable,
            actor=actor,
            reason=reason,
        )

    def _check_target(self, name: str, version: str, named: str | None) -> None:
        if version == named:
            self.read_manifest(name, version)  # still there
        else:
            self.verify_version(name, version)

    def _write_alias(
        self,
        name: str,
        alias: str,
        version: str,
        canary: dict[str, Any] | None,
        *,
        expected_etag: str | None,
        current: AliasRecord | None,
        unreadable: dict[str, Any] | None = None,
        actor: str,
        reason: str,
    ) -> AliasRecord:
        """The compare-and-swap of the alias object, then its history entry."""
        previous = current.version if current else None
        # A change of the canary alone keeps the version a rollback returns to.
        rollback_to = previous if previous != version else (current.body.get("previous_version") if current else None)
        now = datetime.now(UTC)
        body = {
            "name": name,
            "alias": alias,
            "version": version,
            "canary": canary,
            "previous_version": rollback_to,
            "updated_at": now.isoformat(timespec="seconds"),
            "updated_by": actor,
            "reason": reason,
        }
        condition = {"IfNoneMatch": "*"} if expected_etag is None else {"IfMatch": expected_etag}
        try:
            etag = self._put(alias_key(name, alias), json.dumps(body).encode(), "application/json", **condition)
        except RegistryUnavailable:
            raise
        except Exception as exc:
            raise AliasConflict(
                f"alias {alias!r} of model {name!r} changed concurrently; read it again and retry",
                model=name,
                alias=alias,
            ) from exc
        # The alias object holds the latest change; the history keeps every one (who, when, from, to, why).
        entry = {**body, "from": previous}
        if unreadable:
            entry["replaced_unreadable"] = unreadable
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        self._put(
            history_key(name, alias, f"{stamp}-{etag.strip(chr(34))}"),
            json.dumps(entry).encode(),
            "application/json",
        )
        return AliasRecord(name=name, alias=alias, version=version, etag=etag, body=body)

    def alias_history(self, name: str, alias: str) -> list[dict[str, Any]]:
        """Every change of an alias, oldest first."""
        keys = sorted(self._list_keys(history_prefix(name, alias), "the alias history"))
        return [json.loads(self._get(key)[0]) for key in keys]

    def update_alias(
        self,
        name: str,
        alias: str,
        *,
        version: str | None = None,
        canary: Any = KEEP,
        actor: str,
        reason: str,
        if_match: str | None = None,
    ) -> AliasRecord:
        """Change an alias's version, its canary, or both, in one compare-and-swap.

        ``version=None`` keeps the version (the alias must exist and be readable). ``canary`` is
        ``{"version", "weight"}``, ``None`` to end the canary, or left out to keep it, unless it is the
        version promoted (the rollout is finished). With ``if_match``, the change applies only to the
        alias object with that ETag. A version given replaces an alias object that cannot be read.
        """
        current, unreadable = self._alias_state(name, check_alias(alias))
        if version is None:
            if unreadable:
                raise _unreadable(name, alias, unreadable, "there is no version to keep")
            if current is None:
                raise AliasNotFound(f"model {name!r} has no alias {alias!r}", model=name, alias=alias)
            version = current.version
        version = self.exact_version(name, version)  # a version's number names its version
        if canary is KEEP:
            canary = current.body.get("canary") if current else None
            if canary and canary["version"] == version:
                canary = None
        found = current.etag if current else unreadable["etag"] if unreadable else None
        return self.set_alias(
            name,
            alias,
            version,
            expected_etag=if_match or found,
            actor=actor,
            reason=reason,
            canary=canary,
        )

    def promote(
        self, name: str, alias: str, version: str, *, actor: str, reason: str, if_match: str | None = None
    ) -> AliasRecord:
        """Point ``alias`` at ``version`` (creating the alias if needed), compare-and-swap."""
        return self.update_alias(name, alias, version=version, actor=actor, reason=reason, if_match=if_match)

    def set_canary(
        self, name: str, alias: str, version: str | None, weight: float = 0.0, *, actor: str, reason: str
    ) -> AliasRecord:
        """Send ``weight`` of the alias's traffic to ``version``; ``version=None`` ends the canary."""
        canary = {"version": version, "weight": weight} if version else None
        return self.update_alias(
            name, alias, canary=canary, actor=actor, reason=reason or ("canary" if version else "canary ended")
        )

    def rollback(self, name: str, alias: str, *, actor: str, reason: str, if_match: str | None = None) -> AliasRecord:
        """Point ``alias`` back at the version it named before its last change of version."""
        current, unreadable = self._alias_state(name, check_alias(alias))
        if unreadable:
            raise _unreadable(name, alias, unreadable, "its previous version is unknown")
        if current is None:
            current = self.read_alias(name, alias)  # raises the not-found error of this alias or model
        previous = current.body.get("previous_version")
        if not previous:
            raise AliasConflict(f"alias {alias!r} of model {name!r} has no previous version to roll back to")
        canary = current.body.get("canary")
        return self.set_alias(
            name,
            alias,
            previous,
            expected_etag=if_match or current.etag,
            actor=actor,
            reason=reason or "rollback",
            canary=canary if canary and canary["version"] != previous else None,
        )

    def delete_version(self, name: str, version: str) -> None:
        """Delete a version no alias names (as its version or its canary); the manifest goes first, then its
        model.onnx and, when split, its weights. Its number stays taken: it is never given to another version."""
        version = self.exact_version(name, version)
        manifest = self.read_manifest(name, version)
        for alias in self.list_aliases(name):
            record = self.read_alias(name, alias)
            if version in (record.version, record.canary_version):
                raise VersionInUse(
                    f"version {version!r} of model {name!r} is in use by alias {alias!r}; move the alias first",
                    model=name,
                    version=version,
                    alias=alias,
                )
        keys = [manifest_key(name, version), model_key(name, version)]
        if manifest.artifact.external_data is not None:
            keys.append(data_key(name, version))
        for key in keys:
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
            except Exception as exc:
                raise RegistryUnavailable("the model registry could not be written", key=key) from exc
