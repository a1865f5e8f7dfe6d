"""The tensor checks every body convention shares: input names, batch limit, shape, JSON numbers,
finiteness, integers, the dtype's range, and raw text.

The TF Serving codec (``inference``, which API calls and batch files go through) and the Open
Inference codec (``kserve``) only translate their envelopes and call these, so a rule is changed
here once. Errors say which input, what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from maas_core.shared.dtypes import DType
from maas_core.shared.errors import InvalidInput
from maas_core.shared.text import WordTokenizer

if TYPE_CHECKING:
    from maas_core.shared.manifest import TensorSpec

Shape = Sequence[int | None]


def shape_str(shape: Shape) -> str:
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def check_names(names: list[str], specs: Sequence[TensorSpec]) -> None:
    """Each manifest input named once, nothing else."""
    declared = [s.name for s in specs]
    missing, extra = sorted(set(declared) - set(names)), sorted(set(names) - set(declared))
    if missing or extra or len(names) != len(set(names)):
        raise InvalidInput(
            "inputs must name each model input exactly once",
            expected=declared,
            received=names[:20],
            missing=missing,
            unexpected=extra[:20],
        )


def check_batch(name: str, count: int, max_batch: int) -> None:
    """The per-request batch limit, the same for every body convention."""
    if count > max_batch:
        raise InvalidInput(
            f"{count} instances exceed the batch limit of {max_batch}",
            input=name,
            expected=f"at most {max_batch} instances",
            received=count,
        )


def check_shape(name: str, shape: Shape, want: Shape, expected: Any = None) -> None:
    """``shape`` fits the manifest's ``want`` (None = any size); ``expected`` is the protocol's spelling of it."""
    if len(shape) != len(want) or any(d is not None and d != s for d, s in zip(want, shape, strict=False)):
        raise InvalidInput(
            f"input {name!r} has shape {list(shape)}; expected {shape_str(want)} (first dimension = instances)",
            input=name,
            expected=shape_str(want) if expected is None else expected,
            received=list(shape),
        )


def check_same_count(feeds: dict[str, np.ndarray]) -> None:
    if len({len(a) for a in feeds.values()}) > 1:
        raise InvalidInput(
            "all inputs must have the same number of instances", received={k: len(v) for k, v in feeds.items()}
        )


def token_ids(value: Any, spec: TensorSpec, tokenizer: WordTokenizer, max_batch: int) -> np.ndarray:
    """A batch of raw strings for a tokenised input, as the graph's int64 token ids."""
    name = spec.name
    expected = "a non-empty list of strings (raw text, one per instance)"
    if not isinstance(value, list) or len(value) == 0:
        received = type(value).__name__ if not isinstance(value, list) else "empty list"
        raise InvalidInput(f"input {name!r} needs {expected}", input=name, expected=expected, received=received)
    check_batch(name, len(value), max_batch)
    wrong = [i for i, v in enumerate(value) if not isinstance(v, str)]
    if wrong:
        kind = type(value[wrong[0]])
        raise InvalidInput(
            f"input {name!r} takes raw text: each instance must be a string (instance {wrong[0]} is not)",
            input=name,
            expected=expected,
            received="list" if kind is np.ndarray else kind.__name__,  # numpy rows: a JSON list (tensor_json)
        )
    return tokenizer.encode(value)


_JSON_TYPES = {str: "a string", bool: "a boolean", type(None): "null", dict: "an object"}


def check_numbers(name: str, value: Any, dtype: DType, expected: str) -> None:
    """Refuse a nested list whose leaves are not all JSON numbers (booleans only for a bool input).

    numpy would quietly read ``"1"`` and ``true`` as 1.0, and ``null`` as NaN."""
    allow_bool = dtype.json == "boolean"
    pending = [value]
    while pending:
        for item in pending.pop():
            kind = type(item)
            if kind is list:
                pending.append(item)
            elif kind is not float and kind is not int and not (kind is bool and allow_bool):
                what = _JSON_TYPES.get(kind, kind.__name__)
                raise InvalidInput(
                    f"input {name!r} takes numbers; it got {what}",
                    input=name,
                    expected=expected,
                    received=what if kind is not str else f"string {item[:20]!r}",
                )


def numbers(name: str, value: Any, dtype: DType, expected: str) -> np.ndarray:
    """JSON numbers (flat or nested lists) as one float64 array (bool for a bool input); ``expected`` says in
    the protocol's words what should have come. A regular body is read a level at a time (:func:`_flat`);
    anything else is walked number by number, which finds the value to name in the error."""
    is_bool = dtype.json == "boolean"
    if type(value) is list and value and type(value[0]) is np.ndarray:
        # numpy rows (shared.tensor_json read arrays of numbers): stacked in one copy when all are rows of one
        # shape; otherwise (a batch chunk's rows of other shapes, or lists) read as lists, for their errors.
        # A chunk whose first row is a list fails as a whole and is read row by row (shared.batch._batches).
        first = value[0].shape
        if all(type(v) is np.ndarray and v.shape == first for v in value):
            array = np.stack(value)
            return array.astype(np.bool_) if is_bool else array
        value = [v.tolist() if type(v) is np.ndarray else v for v in value]
    regular = _flat(value, _BOOLEAN_LEAVES if is_bool else _NUMBER_LEAVES)
    if regular is not None:
        flat, shape = regular
        try:
            return np.array(flat, dtype=np.bool_ if is_bool else np.float64).reshape(shape)
        except (ValueError, TypeError, OverflowError):
            pass  # an integer too large even for float64: the walk below says so
    check_numbers(name, value, dtype, expected)
    try:
        return np.asarray(value, dtype=np.bool_ if is_bool else np.float64)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"input {name!r} must be a rectangular array of numbers",
            input=name,
            expected=expected,
            received="ragged or non-numeric values",
        ) from None


_FIRST = itemgetter(0)
_NUMBER_LEAVES = frozenset({float, int})
_BOOLEAN_LEAVES = frozenset({float, int, bool})


def _flat(value: Any, leaves: frozenset[type]) -> tuple[list[Any], list[int]] | None:
    """A rectangular nest of lists of JSON numbers as (its numbers in row-major order, its shape), or None
    for anything else. Each level is measured and flattened by C loops (``map``, ``set``, ``chain``), not
    element by element in Python, and numpy then reads one flat list: for 32 digits (2,048 numbers four
    lists deep) about a third of the time of checking each number and letting numpy walk the nest.

    Only the leaves' types are checked: whatever else a level could hold is caught by them (a string or an
    object flattens into strings) or by ``len`` (a number has none)."""
    level, shape = [value], []
    try:
        while level and type(level[0]) is list:
            sizes = set(map(len, level))
            if len(sizes) != 1:
                return None
            shape.append(size := sizes.pop())
            # A level of one-element lists (an image's channel) is taken by index, not chained (32 digits:
            # 0.117 -> 0.099 ms).
            level = list(map(_FIRST, level)) if size == 1 else list(chain.from_iterable(level))
    except (TypeError, KeyError):  # KeyError: an object of one key where a one-element list belongs
        return None
    if level and not set(map(type, level)) <= leaves:
        return None
    return level, shape


def typed(name: str, array: np.ndarray, dtype: DType, datatype: str) -> np.ndarray:
    """The decoded array as the input's dtype: finite, whole where it takes integers, and in its
    range; ``datatype`` is the protocol's name for the dtype."""
    if array.dtype == np.float64:
        if not np.isfinite(array).all():
            raise InvalidInput(
                f"input {name!r} contains NaN or infinite values",
                input=name,
                expected="finite numbers",
                received="NaN or Infinity",
            )
        if dtype.json == "integer" and not np.all(np.equal(np.mod(array, 1), 0)):
            raise InvalidInput(f"input {name!r} expects integers", input=name, expected=datatype, received="fractions")
    return cast_in_range(name, array, dtype.numpy)


def cast_in_range(name: str, array: np.ndarray, np_dtype: Any) -> np.ndarray:
    """Cast to the input's dtype, refusing values it cannot hold: 1e39 is finite in JSON but
    infinite in float32, and 1e30 has no int64."""
    if np.issubdtype(np_dtype, np.integer):
        info = np.iinfo(np_dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise InvalidInput(
                f"input {name!r} has values outside the range of {np.dtype(np_dtype).name}",
                input=name,
                expected=f"integers in [{info.min}, {info.max}]",
                received=f"[{array.min():g}, {array.max():g}]",
            )
        return array.astype(np_dtype)
    with np.errstate(over="ignore"):
        cast = array.astype(np_dtype, copy=False)
    if np.issubdtype(np_dtype, np.floating) and not np.isfinite(cast).all():
        limit = float(np.finfo(np_dtype).max)
        raise InvalidInput(
            f"input {name!r} has values outside the range of {np.dtype(np_dtype).name} (about ±{limit:.3g})",
            input=name,
            expected=f"finite {np.dtype(np_dtype).name} numbers",
            received="a value too large for it",
        )
    return cast
