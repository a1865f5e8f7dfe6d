"""Request bodies whose tensors simdjson reads straight into numpy, without a Python number per value.

orjson makes a Python float of every number of a body, and the tensor checks then walk those lists
(``shared.tensors``): for 32 digits (2,048 numbers) that is most of what the handler adds to
``session.run``. simdjson (pysimdjson) parses the body into a document of its own, and copies an array's
numbers flat into one buffer in C (``Array.as_buffer``), so the numbers never become Python objects.

Read so, where the array is rectangular numbers: a TensorFlow Serving predict body's top-level
``instances`` or ``inputs`` two or more levels deep (``loads``), an Open Inference body's ``data`` of each
input (``loads_infer``: nested, or flat and exactly filling a shape of two or more dimensions), and a
batch file's line (``loads_line``). Each becomes float64 numpy rows, a list that pydantic's ``list[Any]``
keeps as it is and ``shared.tensors.numbers`` stacks back in one copy (a batch line's instance is one
array). A body of which that cannot be proven, that simdjson refuses, or that holds no such array, is read
by ``shared.json_codec`` instead, so it gets the answer it got before, error or not (ARCHITECTURE.md,
Serving rules: one parse per body).

Proof of the shape: ``as_buffer`` refuses any value that is not a number, and the body's text, with its
numbers and white space taken out, must be exactly the envelope as orjson writes it with each such array's
own brackets and commas in its place. A ragged array, a number where a list belongs, a list where a
number belongs, a repeated key or an escape orjson writes otherwise changes that text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from maas_core.shared import json_codec

# A slot reads a key's value, where a tensor may be, into (its value for the body, what _text_fits writes in
# its place), marking each array it read in ``skeletons``; None where it read nothing.
Slot = Callable[[Any, dict[str, bytes]], tuple[Any, Any] | None]


def _array(fewest_dims: int, as_rows: bool) -> Slot:
    """An array of numbers at least ``fewest_dims`` deep: a list of numpy rows (pydantic's ``list[Any]``
    keeps them as they are) or one array."""

    def read(value: Any, skeletons: dict[str, bytes]) -> tuple[Any, Any] | None:
        array = _numbers(value, fewest_dims)
        if array is None:
            return None
        return (list(array) if as_rows else array), _marker(skeletons, array.shape)

    return read


def _infer_inputs(value: Any, skeletons: dict[str, bytes]) -> tuple[Any, Any] | None:
    """An Open Inference body's list of input tensors, each one's data read into rows where it can be."""
    if not hasattr(value, "as_buffer"):
        return None
    read = [_infer_input(item, skeletons) for item in value]
    return [tensor for tensor, _ in read], [shown for _, shown in read]


PREDICT_SLOTS: dict[str, Slot] = {"instances": _array(2, True), "inputs": _array(2, True)}
# A batch line (shared.batch_io.read_jsonl): "instances" holds its one instance, "inputs" is that instance.
LINE_SLOTS: dict[str, Slot] = {"instances": _array(2, True), "inputs": _array(1, False)}
INFER_SLOTS: dict[str, Slot] = {"inputs": _infer_inputs}
_NUMBERS_AND_SPACE = b"0123456789.-+eE \t\n\r"


def loads(text: str | bytes) -> Any:
    """A predict body as ``json_codec.loads`` reads it, except that its tensor may be float64 numpy rows.

    Reading a body of digits and checking its numbers (``shared.tensors.numbers``), against orjson's way
    (in-process, python 3.11): 1 digit (64 numbers) 7.4 against 8.6 us, 8 digits 17.9 against 55.3 us,
    32 digits 51 against 210 us. A body that is not one (text, a ragged array) is parsed twice, by
    simdjson first: ~1 us per KB."""
    body = _fast(_read, text, PREDICT_SLOTS, None)
    return body if body is not None else json_codec.loads(text)


def loads_line(raw: bytes) -> Any:
    """A batch file's line with its instance as one float64 numpy array: the line itself when it is an
    array of numbers, or its object with ``instances`` (a list of rows) or ``inputs`` (the array) read so;
    None for any other line, which is then read as before."""
    return _fast(_read, raw, LINE_SLOTS, 1)


def loads_infer(text: str | bytes) -> Any:
    """An Open Inference (v2) request body as ``json_codec.loads`` reads it, except that an input's ``data``
    of numbers may be float64 numpy rows: nested data its own rows, flat data the rows of the input's
    ``shape`` when it holds exactly that many numbers (``shared.kserve`` reads data flat either way)."""
    body = _fast(_read, text, INFER_SLOTS, None)
    return body if body is not None else json_codec.loads(text)


def _infer_input(item: Any, skeletons: dict[str, bytes]) -> tuple[Any, Any]:
    """(the input tensor, what _text_fits writes for it), its data read into rows where it can be."""
    if not hasattr(item, "keys") or "data" not in item:
        value = _python(item)
        return value, value
    tensor = {key: None if key == "data" else _python(item[key]) for key in item}  # in the document's order
    array = _numbers(item["data"], 1)
    rows = None if array is None else array if array.ndim >= 2 else _shaped(array, tensor.get("shape"))
    if array is None or rows is None:
        tensor["data"] = _python(item["data"])
        return tensor, tensor
    shown = {**tensor, "data": _marker(skeletons, array.shape)}
    tensor["data"] = list(rows)
    return tensor, shown


def _shaped(flat: np.ndarray, shape: Any) -> np.ndarray | None:
    """Flat data as rows of its input's shape: two or more dimensions that hold exactly its numbers."""
    if not isinstance(shape, list) or len(shape) < 2 or not all(type(size) is int and size >= 0 for size in shape):
        return None
    if math.prod(shape) != flat.size:
        return None
    try:
        return flat.reshape(shape)
    except ValueError:  # more dimensions than numpy has: the tensor checks say so
        return None


def _fast(read: Callable[..., Any], text: str | bytes, *args: Any) -> Any:
    """``read`` of the text's UTF-8, or None (read it as before) where it fails in any way: a lone surrogate
    in the event's text has no UTF-8; a key holding NUL is not found in simdjson's document (KeyError);
    whatever else pysimdjson raises, the body still gets json_codec's answer."""
    try:
        return read(text.encode() if isinstance(text, str) else text, *args)
    except Exception:  # the fast path may only ever step aside, never answer otherwise
        return None


def _parse(data: bytes) -> Any:
    """simdjson's document of the body, from a parser of its own: a parser keeps the buffers of the largest
    body it read, for as long as it lives (a new one costs ~1 us at 32 digits)."""
    import simdjson  # lazily: only containers that are sent predict bodies import it (~1 ms)

    return simdjson.Parser().parse(data)


def _read(data: bytes, slots: dict[str, Slot], whole: int | None) -> Any:
    """The document with its slots' arrays of numbers in numpy; ``whole``: the fewest dimensions for the
    document itself to be read as one array (None: it must be an object). None where nothing was read so,
    or the text does not prove what was."""
    doc = _parse(data)  # not JSON, or past simdjson's limits, raises: json_codec then says why
    if hasattr(doc, "as_buffer"):  # an array
        array = _numbers(doc, whole) if whole is not None else None
        if array is None or data.translate(None, _NUMBERS_AND_SPACE) != _skeleton(array.shape):
            return None
        return array
    if not hasattr(doc, "keys"):
        return None
    body: dict[str, Any] = {}
    shown: dict[str, Any] = {}  # the body with a marker where each array was read (_text_fits)
    skeletons: dict[str, bytes] = {}
    for key in doc:  # a repeated key (json_codec keeps its last value) fails _text_fits
        value, slot = doc[key], slots.get(key)
        read = slot(value, skeletons) if slot is not None else None
        if read is None:
            body[key] = shown[key] = _python(value)
        else:
            body[key], shown[key] = read
    if not skeletons or not _text_fits(data, shown, skeletons):
        return None
    return body


def _python(value: Any) -> Any:
    """A document's value as Python's: simdjson gives numbers, strings, booleans and null as they are."""
    if hasattr(value, "as_list"):
        return value.as_list()
    return value.as_dict() if hasattr(value, "as_dict") else value


def _numbers(value: Any, fewest_dims: int) -> np.ndarray | None:
    """A float64 array of an array of numbers at least ``fewest_dims`` deep, its shape read down its first
    elements; None for anything else (whose text ``_text_fits`` then need not prove)."""
    if not hasattr(value, "as_buffer"):
        return None
    try:
        flat = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError):  # a value that is not a number
        return None
    shape, level = [], value
    while hasattr(level, "as_buffer"):
        shape.append(len(level))
        if not shape[-1]:
            break
        level = level[0]
    if len(shape) < fewest_dims or flat.size != math.prod(shape):
        return None
    try:
        return flat.reshape(shape)
    except ValueError:  # more dimensions than numpy has (64): the tensor checks say so
        return None


def _skeleton(shape: tuple[int, ...]) -> bytes:
    """The brackets and commas of a JSON array of this shape: (2, 3) is ``[[,,],[,,]]``; those of the shapes
    of up to 65,536 numbers kept (at most 32, ~4 MB): a batch file's lines are mostly of one shape."""
    return _kept_skeleton(shape) if math.prod(shape) <= 65_536 else _made_skeleton(shape)


@lru_cache(maxsize=32)
def _kept_skeleton(shape: tuple[int, ...]) -> bytes:
    return _made_skeleton(shape)


def _made_skeleton(shape: tuple[int, ...]) -> bytes:
    text = b""
    for size in reversed(shape):
        text = b"[" + b",".join([text] * size) + b"]"
    return text


def _marker(skeletons: dict[str, bytes], shape: tuple[int, ...]) -> str:
    """A string that stands for an array of this shape in the body ``_text_fits`` writes (a client's string
    equal to it only makes the text not fit)."""
    marker = f"\0{len(skeletons)}"
    skeletons[marker] = _skeleton(shape)
    return marker


def _text_fits(data: bytes, shown: Any, skeletons: dict[str, bytes]) -> bool:
    """Whether ``data`` is ``shown`` as orjson writes it, with each marker's array skeleton in its place, once
    numbers and white space are taken out of both."""
    try:
        expected = orjson.dumps(shown)
    except TypeError:  # a value orjson cannot write (an integer past 64 bits)
        return False
    for marker, skeleton in skeletons.items():
        expected = expected.replace(orjson.dumps(marker), skeleton)
    return data.translate(None, _NUMBERS_AND_SPACE) == expected.translate(None, _NUMBERS_AND_SPACE)
