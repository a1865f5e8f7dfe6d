"""Data channels: what a user puts in S3 and SageMaker copies to ``/opt/ml/input/data/<channel>``.

A channel folder holds one or more ``.npz`` files, each with ``x`` (N x H x W x C float32 images,
or N x H x W for one channel) and ``y`` (N integer class ids), plus an optional ``labels.json``
naming the classes in id order. The bundled scikit-learn digits are written in exactly that form,
so the demo exercises the same loader a user's data goes through.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DIGITS_FILE = "digits.npz"
LABELS_FILE = "labels.json"


class ChannelError(ValueError):
    """A data channel cannot be used; the message says which file and what was expected."""


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # float32, N x H x W x C
    y: np.ndarray  # int64, N
    labels: list[str]

    def __len__(self) -> int:
        return len(self.y)


def write_digits_channel(folder: str | Path, seed: int = 0) -> Path:
    """Write scikit-learn's bundled 8x8 digits (1797 images, raw intensities 0..16) as a channel."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    x = digits.images[order].astype(np.float32)[..., np.newaxis]
    y = digits.target[order].astype(np.int64)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / DIGITS_FILE, x=x, y=y)
    (folder / LABELS_FILE).write_text(json.dumps([str(c) for c in digits.target_names]))
    return folder


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise ChannelError(f"{path.name}: not a readable .npz archive (numpy.savez output expected)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files if key in ("x", "y")}
            found = archive.files
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, AttributeError, TypeError) as exc:
        raise ChannelError(f"{path.name}: not a readable .npz archive ({type(exc).__name__}: {exc})") from exc
    missing = {"x", "y"} - set(arrays)
    if missing:
        raise ChannelError(f"{path.name}: expected arrays 'x' and 'y', missing {sorted(missing)} (found {found})")
    x, y = arrays["x"], arrays["y"]
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4:
        raise ChannelError(f"{path.name}: x must be N x H x W x C (or N x H x W), got shape {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise ChannelError(f"{path.name}: y must be a vector with one label per image, got {y.shape} for x {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.issubdtype(y.dtype, np.integer):
        raise ChannelError(f"{path.name}: x must be numeric and y integer, got x {x.dtype} and y {y.dtype}")
    return x.astype(np.float32), y.astype(np.int64)


def load_channel(folder: str | Path, name: str = "train") -> Dataset:
    """Read every ``.npz`` file of a channel folder (sorted by name) into one dataset."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ChannelError(f"channel {name!r}: {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*.npz") if p.is_file())
    if not files:
        present = sorted(p.name for p in folder.iterdir())[:10]
        raise ChannelError(f"channel {name!r}: no .npz files in {folder} (found {present or 'nothing'})")
    parts = [_read_npz(p) for p in files]
    shapes = {x.shape[1:] for x, _ in parts}
    if len(shapes) > 1:
        raise ChannelError(f"channel {name!r}: files disagree on the image shape: {sorted(shapes)}")
    x = np.concatenate([x for x, _ in parts])
    y = np.concatenate([y for _, y in parts])
    if len(y) == 0:
        raise ChannelError(f"channel {name!r}: the .npz files hold no rows")
    if not np.isfinite(x).all():
        raise ChannelError(f"channel {name!r}: x holds NaN or infinite values")
    labels = _read_labels(folder, name, y)
    return Dataset(x=x, y=y, labels=labels)


def _read_labels(folder: Path, name: str, y: np.ndarray) -> list[str]:
    path = folder / LABELS_FILE
    if path.exists():
        try:
            labels = json.loads(path.read_text())
        except ValueError as exc:
            raise ChannelError(f"channel {name!r}: {LABELS_FILE} is not valid JSON") from exc
        if not isinstance(labels, list) or not labels or not all(isinstance(s, str) for s in labels):
            raise ChannelError(f"channel {name!r}: {LABELS_FILE} must be a non-empty list of strings")
    else:
        labels = [str(i) for i in range(int(y.max()) + 1)]
    if y.min() < 0 or y.max() >= len(labels):
        raise ChannelError(
            f"channel {name!r}: labels must be class ids 0..{len(labels) - 1}, got {int(y.min())}..{int(y.max())}"
        )
    return labels


def split_holdout(data: Dataset, fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A deterministic, stratified train/held-out split, used when no validation channel is given."""
    from sklearn.model_selection import train_test_split

    _, counts = np.unique(data.y, return_counts=True)
    stratify = data.y if counts.min() >= 2 else None
    try:
        x_train, x_held, y_train, y_held = train_test_split(
            data.x, data.y, test_size=fraction, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        raise ChannelError(f"cannot hold out {fraction:.0%} of {len(data)} rows for evaluation: {exc}") from exc
    return Dataset(x_train, y_train, data.labels), Dataset(x_held, y_held, data.labels)
