"""Verified model files on the function's local disk (/tmp), named by their sha256, within its ephemeral storage.

Why a file: onnxruntime builds a session from a path with about half the peak memory of building it
from the same bytes held in Python (``python -m bench.loading``), and a version whose session was
evicted from memory loads again without a download.

Why the file can be trusted: the folder is private (``private_dir``: this process owner's, mode
0700), and a file is renamed to ``<sha256>.onnx`` only after its size and sha256 matched the
manifest as the bytes arrived (``Registry.download_model``), so a file of that name is that model.
A split model (ARCHITECTURE.md, "Registry layout": its weights in ``model.onnx.data``) is a folder
``<sha256 of its graph>-<sha256 of its weights>/`` (``Artifact.files_id``: a split graph alone does not
tell two trainings of one architecture apart) holding ``model.onnx`` and ``model.onnx.data`` side by
side, the names its graph gives onnxruntime, which resolves them beside the graph's path; the folder
takes that name only once both files verified.

The folder holds at most the function's ephemeral storage less ``STORAGE_RESERVE_MIB`` (ARCHITECTURE.md,
Serving): before a download, the least recently used files go first, never one in use (being
downloaded, or a session being built from it); a split model's folder counts, and goes, as one entry of
both its files. A model that cannot fit is refused with ``ModelTooLargeHere`` (507) and nothing held is lost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from maas_core.shared.errors import ModelTooLargeHere
from maas_core.shared.layout import DATA_FILE, MODEL_FILE
from maas_core.shared.sizing import MIB, STORAGE_RESERVE_MIB, storage_mib

if TYPE_CHECKING:
    from maas_core.shared.manifest import Manifest
    from maas_core.shared.registry import Registry

_in_use: Counter[str] = Counter()  # files_id (sha256) -> users in this process; their files are never evicted
_in_use_lock = threading.Lock()


@contextlib.contextmanager
def in_use(sha256: str) -> Iterator[None]:
    """Every file of this model (its .onnx, or its split folder) is kept while the block runs."""
    with _in_use_lock:
        _in_use[sha256] += 1
    try:
        yield
    finally:
        with _in_use_lock:
            _in_use[sha256] -= 1
            if not _in_use[sha256]:
                del _in_use[sha256]


def _owner(path: Path) -> str:
    """The model a cached entry belongs to: every entry of the folder is named ``<files_id>`` (a split model's
    folder) or ``<files_id>.<...>``."""
    return path.name.split(".", 1)[0]


def _footprint(path: Path) -> tuple[float, int]:
    """(last use, bytes) of a cached entry: a split model's folder counts both its files."""
    info = path.lstat()
    if not os.path.isdir(path) or path.is_symlink():
        return info.st_mtime, info.st_size
    return info.st_mtime, sum(child.lstat().st_size for child in path.iterdir())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _complete(graph: Path, manifest: Manifest) -> bool:
    """Whether the verified files of ``manifest`` are there (sizes checked: names are given only after the hash)."""
    artifact = manifest.artifact
    files = [(graph, artifact.size_bytes)]
    if artifact.external_data is not None:
        files.append((graph.with_name(DATA_FILE), artifact.external_data.size_bytes))
    return all(path.is_file() and path.stat().st_size == size for path, size in files)


class ModelFiles:
    """The verified model files of one folder (None: a temporary folder per load, nothing kept)."""

    def __init__(self, folder: Path | None, budget_bytes: int | None = None) -> None:
        self.folder = folder
        self._budget = budget_bytes

    @property
    def budget_bytes(self) -> int:
        if self._budget is None:
            self._budget = max(0, storage_mib(str(self.folder or tempfile.gettempdir())) - STORAGE_RESERVE_MIB) * MIB
        return self._budget

    @contextlib.contextmanager
    def local(self, registry: Registry, name: str, version: str, manifest: Manifest) -> Iterator[Path]:
        """The verified model.onnx of a version on local disk (a split model's weights beside it), downloaded
        if it is not there, in use while the block runs."""
        key, size = manifest.artifact.files_id, manifest.artifact.total_bytes
        if self.folder is None:
            self.make_room(size, name)
            with tempfile.TemporaryDirectory(prefix="maas-model-") as folder:
                path = Path(folder) / MODEL_FILE
                registry.download_model(name, version, manifest, path)
                yield path
            return
        split = manifest.artifact.external_data is not None
        entry = self.folder / (key if split else f"{key}.onnx")
        path = entry / MODEL_FILE if split else entry
        with in_use(key):
            if _complete(path, manifest):
                os.utime(entry)  # most recently used
            else:
                self.make_room(size, name)
                part = entry.with_name(f"{entry.name}.{os.getpid()}.{threading.get_ident()}.part")
                try:
                    if split:
                        part.mkdir()
                        registry.download_model(name, version, manifest, part / MODEL_FILE)
                        # A folder cannot replace another: one left incomplete goes (a complete one stays:
                        # another load of the same graph may be reading it).
                        if not _complete(path, manifest):
                            with contextlib.suppress(FileNotFoundError):
                                shutil.rmtree(entry)
                            os.replace(part, entry)
                    else:
                        registry.download_model(name, version, manifest, part)
                        os.replace(part, entry)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        _remove(part)
            yield path

    def make_room(self, size: int, name: str) -> None:
        """Evict least recently used files not in use until ``size`` more bytes fit the budget; ModelTooLargeHere
        when they cannot."""
        if self.folder is None:
            if size > self.budget_bytes:
                raise self._refusal(size, name, 0)
            return
        files = []
        for path in self.folder.iterdir():
            with contextlib.suppress(OSError):
                files.append((*_footprint(path), path))
        used = sum(size for _, size, _ in files)
        with _in_use_lock:
            held = set(_in_use)
        for _, file_size, path in sorted(files):
            if used + size <= self.budget_bytes:
                break
            if _owner(path) in held:
                continue
            with contextlib.suppress(OSError):
                _remove(path)
                used -= file_size
        if used + size > self.budget_bytes:
            raise self._refusal(size, name, used)

    def _refusal(self, size: int, name: str, in_use_bytes: int) -> ModelTooLargeHere:
        return ModelTooLargeHere(
            f"model {name!r} needs {size} bytes of ephemeral storage; this function keeps at most "
            f"{self.budget_bytes} for models, {in_use_bytes} of them in use; give it more EphemeralStorage",
            model=name,
            size_bytes=size,
            budget_bytes=self.budget_bytes,
            in_use_bytes=in_use_bytes,
        )
