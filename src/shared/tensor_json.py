"""Predict bodies whose tensor simdjson reads straight into numpy, without a Python number per value.

orjson makes a Python float of every number of a body, and the tensor checks then walk those lists
(``shared.tensors``): for 32 digits (2,048 numbers) that is most of what the handler adds to
``session.run``. simdjson (pysimdjson) parses the body into a document of its own, and copies an array's
numbers flat into one buffer in C (``Array.as_buffer``), so the numbers never become Python objects.

Only a TensorFlow Serving body's top-level ``instances`` or ``inputs`` is read so, and only when it is a
rectangular array of numbers two or more levels deep: it becomes a list of float64 numpy rows, which
pydantic's ``list[Any]`` keeps as they are and ``shared.tensors.numbers`` stacks back in one copy. A
batch file's line is read the same way (``loads_line``), its instance one array. A
body of which that cannot be proven, that simdjson refuses or that holds no such array is read by
``shared.json_codec`` instead, so it gets the answer it got before, error or not
(ARCHITECTURE.md, Serving rules: the request path).

Proof of the shape: ``as_buffer`` refuses any value that is not a number, and the body's text, with
its numbers and white space taken out, must be exactly the text of an array of that shape (brackets and
commas) inside the envelope as orjson writes it. A ragged array, a number where a list belongs, or a
list where a number belongs, changes that text.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from maas_core.shared import json_codec

# Where a tensor may be: its key, the fewest dimensions its array needs and whether it becomes a list of
# numpy rows (a predict body: pydantic's ``list[Any]`` keeps them as they are) or stays one array.
PREDICT_SLOTS = {"instances": (2, True), "inputs": (2, True)}
# A batch line (shared.batch_io.read_jsonl): "instances" holds its one instance, "inputs" is that instance.
LINE_SLOTS = {"instances": (2, True), "inputs": (1, False)}
_NUMBERS_AND_SPACE = b"0123456789.-+eE \t\n\r"


def loads(text: str | bytes) -> Any:
    """A predict body as ``json_codec.loads`` reads it, except that its tensor may be float64 numpy rows.

    Reading a body of digits and checking its numbers (``shared.tensors.numbers``), against orjson's way
    (in-process, python 3.11): 1 digit (64 numbers) 7.4 against 8.6 us, 8 digits 17.9 against 55.3 us,
    32 digits 51 against 210 us. A body that is not one (text, a ragged array) is parsed twice, by
    simdjson first: ~1 us per KB."""
    try:
        body = _read(text.encode() if isinstance(text, str) else text, PREDICT_SLOTS, whole=None)
    except UnicodeEncodeError:  # a lone surrogate in the event's text: no UTF-8 to give simdjson
        body = None
    return body if body is not None else json_codec.loads(text)


def loads_line(raw: bytes) -> Any:
    """A batch file's line with its instance as one float64 numpy array: the line itself when it is an
    array of numbers, or its object with ``instances`` (a list of rows) or ``inputs`` (the array) read so;
    None for any other line, which is then read as before."""
    return _read(raw, LINE_SLOTS, whole=1)


def _parse(data: bytes) -> Any:
    """simdjson's document of the body, from a parser of its own: a parser keeps the buffers of the largest
    body it read, for as long as it lives (a new one costs ~1 us at 32 digits)."""
    import simdjson  # lazily: only containers that are sent predict bodies import it (~1 ms)

    return simdjson.Parser().parse(data)


def _read(data: bytes, slots: dict[str, tuple[int, bool]], whole: int | None) -> Any:
    """The document with each slot's array of numbers in numpy; ``whole``: the fewest dimensions for the
    document itself to be read as one array (None: it must be an object). None where nothing was read so,
    or the text does not prove what was."""
    try:
        doc = _parse(data)
    except (ValueError, TypeError, RuntimeError):  # not JSON, or past simdjson's limits: json_codec says why
        return None
    if hasattr(doc, "as_buffer"):  # an array
        array = _numbers(doc, whole) if whole is not None else None
        if array is None or data.translate(None, _NUMBERS_AND_SPACE) != _skeleton(array.shape):
            return None
        return array
    if not hasattr(doc, "keys"):
        return None
    body: dict[str, Any] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for key in doc:  # a repeated key (json_codec keeps its last value) fails _text_fits
        value, slot = doc[key], slots.get(key)
        array = _numbers(value, slot[0]) if slot is not None else None
        if slot is not None and array is not None:
            shapes[key] = array.shape
            body[key] = list(array) if slot[1] else array
        else:
            body[key] = _python(value)
    if not shapes or not _text_fits(data, body, shapes):
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


def _text_fits(data: bytes, body: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> bool:
    try:
        parts = [
            orjson.dumps(k) + b":" + (_skeleton(shapes[k]) if k in shapes else orjson.dumps(v)) for k, v in body.items()
        ]
    except TypeError:  # a value orjson cannot write (an integer past 64 bits)
        return False
    expected = b"{" + b",".join(parts) + b"}"
    return data.translate(None, _NUMBERS_AND_SPACE) == expected.translate(None, _NUMBERS_AND_SPACE)
