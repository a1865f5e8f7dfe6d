"""Data channels: what a user puts in S3 and SageMaker copies to ``/opt/ml/input/data/<channel>``.

A channel folder holds files of one format (read in name order, subfolders included):

- ``.npz``: arrays ``x`` (N x H x W x C images, N x H x W for one channel, or N x F feature rows)
  and ``y`` (N integer class ids, or N numbers for regression);
- ``.csv``: a header row, then one row per example; the label column is named by the
  ``label_column`` hyperparameter (default ``label``) and every other column is a feature, in
  file order;
- ``.jsonl``: one JSON object per line, either features by name plus the label column, or
  ``{"x": [...], "y": ...}``.

Classification labels are class ids or class names. An optional ``labels.json`` names the classes
in id order; without it, integer labels are ids 0..max and names are taken in sorted order. The
bundled scikit-learn data sets are written as channels in exactly these forms (digits as
``.npz``, breast cancer, wine and diabetes as CSV with their real column names), so the demo
exercises the same loader a user's data goes through.
"""

from __future__ import annotations

import csv
import json
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas_core.shared.manifest import CLASSIFICATION, REGRESSION

DIGITS_FILE = "digits.npz"
LABELS_FILE = "labels.json"
DEFAULT_LABEL_COLUMN = "label"
DEFAULT_TEXT_COLUMN = "text"
FORMATS = (".npz", ".csv", ".jsonl")
# scikit-learn's bundled tabular sets: (loader name, task). Diabetes is written unscaled, as measured.
TABULAR_DATASETS = {
    "breast_cancer": ("load_breast_cancer", CLASSIFICATION),
    "wine": ("load_wine", CLASSIFICATION),
    "diabetes": ("load_diabetes", REGRESSION),
}


def _json_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """("<file> line N", object) for every non-blank line of a JSON Lines file; anything else is an error."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ChannelError(f"{path.name} line {n}: not valid JSON ({exc})") from None
            if not isinstance(item, dict):
                raise ChannelError(f"{path.name} line {n}: expected a JSON object, got {type(item).__name__}")
            yield f"{path.name} line {n}", item


def _read_text_rows(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[Any]]:
    """(texts, labels) of a CSV or JSON Lines file of a text channel."""
    records: list[tuple[str, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            if not header:
                raise ChannelError(f"{path.name}: empty file; expected a header row, then one row per example")
            reader.fieldnames = header
            records = [(f"{path.name} line {n}", dict(r)) for n, r in enumerate(reader, start=2) if any(r.values())]
    else:
        records = list(_json_objects(path))
    texts, labels = [], []
    for where, record in records:
        for column, hyperparameter in ((text_column, "text_column"), (label_column, "label_column")):
            if record.get(column) is None:
                raise ChannelError(
                    f"{where}: no {column!r} value among {sorted(record)[:20]} "
                    f"(set the {hyperparameter} hyperparameter to the column that holds it)"
                )
        if not isinstance(record[text_column], str):
            raise ChannelError(f"{where}: {text_column!r} must be a string, got {json.dumps(record[text_column])[:40]}")
        texts.append(record[text_column])
        labels.append(record[label_column])
    return texts, labels


class ChannelError(ValueError):
    """A data channel cannot be used; the message says which file and what was expected."""


@dataclass(frozen=True)
class Dataset:
    x: np.ndarray  # float32, N x H x W x C images or N x F feature rows
    y: np.ndarray  # int64 class ids, or float32 targets for regression; N
    labels: list[str]  # class names in id order; empty for regression
    columns: list[str] | None = None  # feature names, in x's column order, when the data named them

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


def write_tabular_channel(folder: str | Path, dataset: str = "breast_cancer", seed: int = 0) -> Path:
    """Write one of scikit-learn's bundled tabular sets as ``<dataset>.csv``, as a user would: a
    header of the real feature names plus ``label``; class names as labels, raw measured values."""
    import sklearn.datasets

    if dataset not in TABULAR_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(TABULAR_DATASETS)}; got {dataset!r}")
    loader, task = TABULAR_DATASETS[dataset]
    kwargs = {"scaled": False} if dataset == "diabetes" else {}
    bunch = getattr(sklearn.datasets, loader)(**kwargs)
    order = np.random.default_rng(seed).permutation(len(bunch.target))
    names = [str(n) for n in bunch.feature_names]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dataset}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*names, DEFAULT_LABEL_COLUMN])
        for i in order:
            target = bunch.target[i]
            label = str(bunch.target_names[target]) if task == CLASSIFICATION else repr(float(target))
            writer.writerow([repr(float(v)) for v in bunch.data[i]] + [label])
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
    if x.ndim not in (2, 4):
        raise ChannelError(
            f"{path.name}: x must be N x H x W x C (or N x H x W) images or N x F features, got shape {x.shape}"
        )
    if y.ndim != 1 or len(y) != len(x):
        raise ChannelError(f"{path.name}: y must be a vector with one label per row, got {y.shape} for x {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.issubdtype(y.dtype, np.number):
        raise ChannelError(f"{path.name}: x and y must be numeric, got x {x.dtype} and y {y.dtype}")
    return x.astype(np.float32), y


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ChannelError(f"{where}: expected a number, got {json.dumps(value)[:40]}")
    try:
        number = float(value)
    except ValueError:
        raise ChannelError(f"{where}: expected a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise ChannelError(f"{where}: expected a finite number, got {value!r}")
    return number


def _read_csv(path: Path, label_column: str) -> tuple[np.ndarray, list[Any], list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise ChannelError(f"{path.name}: empty file; expected a header row, then one row per example")
        if label_column not in header:
            raise ChannelError(
                f"{path.name}: no label column {label_column!r} in the header {header[:20]} "
                f"(set the label_column hyperparameter to the column that holds the labels)"
            )
        if len(set(header)) != len(header):
            raise ChannelError(f"{path.name}: the header repeats column names: {header[:20]}")
        at = header.index(label_column)
        columns = [h for i, h in enumerate(header) if i != at]
        if not columns:
            raise ChannelError(f"{path.name}: no feature columns besides the label column {label_column!r}")
        rows: list[list[float]] = []
        labels: list[Any] = []
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ChannelError(f"{path.name} line {line}: {len(row)} values for {len(header)} columns")
            labels.append(row[at].strip())
            rows.append(
                [
                    _number(v, f"{path.name} line {line} column {h!r}")
                    for i, (h, v) in enumerate(zip(header, row, strict=True))
                    if i != at
                ]
            )
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), len(columns)), labels, columns


def _read_jsonl(path: Path, label_column: str) -> tuple[np.ndarray, list[Any], list[str] | None]:
    rows: list[Any] = []
    labels: list[Any] = []
    columns: list[str] | None = None
    keyed: bool | None = None
    for where, item in _json_objects(path):
        if keyed is None:
            keyed = set(item) != {"x", "y"}
            if keyed:
                if label_column not in item:
                    raise ChannelError(
                        f"{where}: no label column {label_column!r} among the keys {sorted(item)[:20]} "
                        f'(set the label_column hyperparameter, or write {{"x": [...], "y": ...}} objects)'
                    )
                columns = [k for k in item if k != label_column]
                if not columns:
                    raise ChannelError(f"{where}: no feature keys besides the label column {label_column!r}")
        if keyed:
            assert columns is not None
            if label_column not in item or set(item) != {*columns, label_column}:
                missing = sorted({*columns, label_column} - set(item))
                extra = sorted(set(item) - {*columns, label_column})
                raise ChannelError(f"{where}: keys differ from line 1's: missing {missing[:10]}, extra {extra[:10]}")
            labels.append(item[label_column])
            rows.append([_number(item[c], f"{where} key {c!r}") for c in columns])
        else:
            if set(item) != {"x", "y"}:
                raise ChannelError(f"{where}: expected keys 'x' and 'y' like line 1, got {sorted(item)[:10]}")
            labels.append(item["y"])
            rows.append(item["x"])
    if not rows:
        return np.zeros((0, len(columns or [])), np.float32), [], columns
    try:
        x = np.asarray(rows, dtype=np.float32)
    except (ValueError, TypeError):
        raise ChannelError(f"{path.name}: 'x' values must be numbers, all of one shape") from None
    if x.ndim == 1:
        x = x[:, np.newaxis]
    return x, labels, columns


def _class_ids(values: list[Any] | np.ndarray, known: list[str] | None, name: str) -> tuple[np.ndarray, list[str]]:
    """Class ids and names from labels given as ids (ints) or names (strings)."""
    if isinstance(values, np.ndarray):
        y = values.astype(np.int64)
        return _checked_ids(y, known, name), known if known is not None else [str(i) for i in range(int(y.max()) + 1)]
    ints: list[int] = []
    for v in values:
        text = str(v).strip()
        if isinstance(v, bool) or not text.lstrip("-").isdigit():
            break
        ints.append(int(text))
    else:
        y = _checked_ids(np.asarray(ints, dtype=np.int64), known, name)
        return y, known if known is not None else [str(i) for i in range(int(y.max()) + 1 if len(y) else 0)]
    names = [str(v).strip() for v in values]
    labels = known if known is not None else sorted(set(names))
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ChannelError(
            f"channel {name!r}: labels {unknown[:10]} are not among {LABELS_FILE}'s classes {labels[:20]}"
        )
    return np.asarray([index[n] for n in names], dtype=np.int64), labels


def _checked_ids(y: np.ndarray, known: list[str] | None, name: str) -> np.ndarray:
    """Class ids must index the classes: 0..n-1, n from labels.json when there is one."""
    if len(y) and (int(y.min()) < 0 or (known is not None and int(y.max()) >= len(known))):
        bad = sorted({int(v) for v in y if v < 0 or (known is not None and v >= len(known))})
        limit = f"0..{len(known) - 1} ({LABELS_FILE} names {len(known)} classes)" if known is not None else "0 or more"
        raise ChannelError(f"channel {name!r}: class ids {bad[:10]} are out of range; expected {limit}")
    return y


def _targets(values: list[Any] | np.ndarray, name: str) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(np.float32)
    where = f"channel {name!r} regression label of row"
    return np.asarray([_number(v, f"{where} {i + 1}") for i, v in enumerate(values)], dtype=np.float32)


def channel_files(folder: Path, name: str) -> tuple[str, list[Path]]:
    """The data files of a channel and their one format; says what came when that is not so."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
    formats = sorted({p.suffix.lower() for p in files})
    if not files:
        present = sorted(p.name for p in folder.iterdir())[:10]
        raise ChannelError(
            f"channel {name!r}: no .npz, .csv or .jsonl files in {folder} (found {present or 'nothing'})"
        )
    if len(formats) > 1:
        by_format = {f: [p.name for p in files if p.suffix.lower() == f][:3] for f in formats}
        raise ChannelError(f"channel {name!r}: holds several formats {by_format}; put one format in a channel")
    return formats[0], files


def load_channel(
    folder: str | Path,
    name: str = "train",
    *,
    label_column: str = DEFAULT_LABEL_COLUMN,
    task: str = CLASSIFICATION,
    text_column: str | None = None,
) -> Dataset:
    """Read every data file of a channel folder (one format, sorted by name) into one dataset.

    With ``text_column`` (the text families) each row is a text and a label: ``x`` is then a vector
    of Python strings (dtype object), tokenised later by ``shared.text``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ChannelError(f"channel {name!r}: {folder} is not a folder")
    fmt, files = channel_files(folder, name)
    columns: list[str] | None = None
    if text_column is not None:
        if fmt == ".npz":
            raise ChannelError(f"channel {name!r}: text comes as .csv or .jsonl rows with a {text_column!r} column")
        texts: list[str] = []
        label_values: list[Any] = []
        for path in files:
            part_texts, part_labels = _read_text_rows(path, text_column, label_column)
            texts += part_texts
            label_values += part_labels
        if not texts:
            raise ChannelError(f"channel {name!r}: the {fmt} files hold no rows")
        y, labels = _class_ids(label_values, _read_labels_file(folder, name), name)
        if y.min() < 0 or y.max() >= len(labels):
            raise ChannelError(f"channel {name!r}: labels must be class ids 0..{len(labels) - 1}")
        text_x = np.empty(len(texts), dtype=object)
        text_x[:] = texts
        return Dataset(x=text_x, y=y, labels=labels, columns=[text_column])
    if fmt == ".npz":
        parts = [_read_npz(p) for p in files]
        xs, ys = [x for x, _ in parts], [y for _, y in parts]
        if task == CLASSIFICATION and not all(np.issubdtype(y.dtype, np.integer) for y in ys):
            raise ChannelError(f"channel {name!r}: y must hold integer class ids for a classifier")
        values: list[Any] | np.ndarray = np.concatenate(ys)
    else:
        xs, values = [], []
        for path in files:
            x, labels, found = (_read_csv if fmt == ".csv" else _read_jsonl)(path, label_column)
            if xs and found != columns:
                raise ChannelError(f"channel {name!r}: {path.name} has columns {found}, the first file {columns}")
            columns = found
            xs.append(x)
            values += labels
    shapes = {x.shape[1:] for x in xs}
    if len(shapes) > 1:
        raise ChannelError(f"channel {name!r}: files disagree on the row shape: {sorted(shapes)}")
    x = np.concatenate(xs).astype(np.float32)
    if len(values) == 0:
        raise ChannelError(f"channel {name!r}: the {fmt} files hold no rows")
    if not np.isfinite(x).all():
        raise ChannelError(f"channel {name!r}: x holds NaN or infinite values")
    if task == REGRESSION:
        return Dataset(x=x, y=_targets(values, name), labels=[], columns=columns)
    y, labels = _class_ids(values, _read_labels_file(folder, name), name)
    if y.min() < 0 or y.max() >= len(labels):
        raise ChannelError(
            f"channel {name!r}: labels must be class ids 0..{len(labels) - 1}, got {int(y.min())}..{int(y.max())}"
        )
    return Dataset(x=x, y=y, labels=labels, columns=columns)


def _read_labels_file(folder: Path, name: str) -> list[str] | None:
    path = folder / LABELS_FILE
    if not path.exists():
        return None
    try:
        labels = json.loads(path.read_text())
    except ValueError as exc:
        raise ChannelError(f"channel {name!r}: {LABELS_FILE} is not valid JSON") from exc
    if not isinstance(labels, list) or not labels or not all(isinstance(s, str) for s in labels):
        raise ChannelError(f"channel {name!r}: {LABELS_FILE} must be a non-empty list of strings")
    return labels


def split_holdout(data: Dataset, fraction: float = 0.2, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A deterministic, stratified train/held-out split, used when no validation channel is given."""
    from sklearn.model_selection import train_test_split

    stratify = None
    if np.issubdtype(data.y.dtype, np.integer):
        _, counts = np.unique(data.y, return_counts=True)
        stratify = data.y if counts.min() >= 2 else None
    try:
        x_train, x_held, y_train, y_held = train_test_split(
            data.x, data.y, test_size=fraction, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        raise ChannelError(f"cannot hold out {fraction:.0%} of {len(data)} rows for evaluation: {exc}") from exc
    return (
        Dataset(x_train, y_train, data.labels, data.columns),
        Dataset(x_held, y_held, data.labels, data.columns),
    )
