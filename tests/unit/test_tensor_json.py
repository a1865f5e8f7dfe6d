"""shared.tensor_json: a predict body's tensor read by simdjson into numpy rows gives exactly the tensor the
orjson reading gives, and every body it cannot prove rectangular numbers is read as before."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import numpy as np
import pytest

from maas_core.shared import json_codec, tensor_json
from maas_core.shared.dtypes import DTYPES
from maas_core.shared.errors import InvalidInput
from maas_core.shared.tensors import numbers

FLOAT32 = DTYPES["float32"]


def _is_rows(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(v) is np.ndarray for v in value)


def _tensor(value: Any) -> tuple[str, Any]:
    """What the tensor checks make of a body's value: the array, or the error they give."""
    try:
        array = numbers("x", value, FLOAT32, "numbers")
    except InvalidInput as error:
        return "error", error.to_body()
    return "array", (array.dtype.str, array.shape, array.tobytes())


def _same_reading(text: str) -> bool:
    """Assert the fast reading equals json_codec's; True when it took the fast path."""
    fast, plain = tensor_json.loads(text), json_codec.loads(text)
    assert type(fast) is type(plain)
    if not isinstance(plain, dict):
        assert fast == plain
        return False
    assert list(fast) == list(plain)
    took = False
    for key, value in plain.items():
        if key in tensor_json.PREDICT_SLOTS and _is_rows(fast[key]):
            took = True
            assert _tensor(fast[key]) == _tensor(value), text[:200]
        else:
            assert fast[key] == value
    return took


def _nest(shape: tuple[int, ...], leaf: Any) -> Any:
    return [_nest(shape[1:], leaf) for _ in range(shape[0])] if shape else leaf()


def _number(rng: random.Random) -> Any:
    return rng.choice(
        [
            lambda: rng.randint(-(2**63), 2**64 - 1),
            lambda: rng.uniform(-1e6, 1e6),
            lambda: rng.uniform(-1, 1) * 10.0 ** rng.randint(-300, 300),
            lambda: 0,
            lambda: -0.0,
            lambda: rng.randint(-5, 5),
        ]
    )()


def test_a_rectangular_body_of_numbers_is_read_into_rows_equal_to_orjsons_reading() -> None:
    text = json.dumps({"instances": [[[1, 2.5], [-3e-7, 4e10]], [[5, 6], [7, 8]]]})
    body = tensor_json.loads(text)
    assert _is_rows(body["instances"]) and len(body["instances"]) == 2
    assert _same_reading(text)
    assert numbers("x", body["instances"], FLOAT32, "n").tolist() == [[[1, 2.5], [-3e-7, 4e10]], [[5, 6], [7, 8]]]


@pytest.mark.parametrize(
    "text",
    [
        '{"instances": [[1, 2, 3], [4]]}',  # ragged, the same count as a first-path shape would not give
        '{"instances": [[1, 2], [3], [4, 5, 6]]}',  # ragged with the count of its first-path shape (3 x 2)
        '{"instances": [[1, 2], [3, [4]]]}',  # a list where a number belongs
        '{"instances": [[1, [2]], [3, 4]]}',
        '{"instances": [[[1], [2]], [3, 4]]}',  # a number where a list belongs
        '{"instances": [[1, true], [3, 4]]}',
        '{"instances": [[1, null], [3, 4]]}',
        '{"instances": [[1, "2"], [3, 4]]}',
        '{"instances": [[1, {"a": 2}], [3, 4]]}',
        '{"instances": [[1, 2], [3, 4]], "instances": [[5]]}',  # a repeated key: json_codec keeps the last
        '{"instances": [[NaN, 2], [3, 4]]}',  # the json module's NaN: refused later as not finite
        '{"instances": [[1e999, 2], [3, 4]]}',
        '{"instances": [[123456789012345678901234567890, 2], [3, 4]]}',
        '{"instances": [1, 2, 3]}',  # one level: not worth rows
        '{"instances": []}',
        "[[1, 2], [3, 4]]",
        '{"signature_name": "s\\u0065rving", "instances": [[1, 2], [3, 4]]}',  # an escape orjson writes otherwise
        '{"instances": [{"a": [1, 2]}, {"a": [3, 4]}]}',
        '{"inputs": {"a": [[1, 2]], "b": [[3, 4]]}}',
        '{"a\\u0000b": 1, "instances": [[1, 2], [3, 4]]}',  # a key holding NUL: simdjson cannot look it up
        '{"instances": ' + "[" * 70 + "1" + "]" * 70 + "}",  # more dimensions than numpy has
    ],
)
def test_a_body_that_is_not_provably_rectangular_numbers_is_read_as_before(text: str) -> None:
    assert not _same_reading(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"instances": [[], []]}',
        '{"signature_name": "serving_default", "instances": [[1, 2], [3, 4]], "top_k": 3}',
        '{\n  "inputs": [\n    [1.5, -2],\n    [3E2, 4e-2]\n  ]\n}\n',
        '{"instances":[[[[0.0],[1.0]],[[2.0],[3.0]]]]}',
        '{"instances": [[18446744073709551615, -9223372036854775808], [9007199254740993, 1]]}',
        '{"note": "ünï [,] 123", "instances": [[1, 2], [3, 4]]}',
    ],
)
def test_rows_are_read_whatever_the_spacing_and_envelope(text: str) -> None:
    assert _same_reading(text)


def test_random_arrays_and_their_broken_forms_read_the_same_both_ways() -> None:
    """Random shapes and numbers, each also made ragged, deeper, shallower or non-numeric at a random
    place: the fast reading either proves the array and gives orjson's tensor bit for bit, or steps aside."""
    rng = random.Random(20261201)
    took = 0
    for _ in range(400):
        shape = tuple(rng.randint(1, 4) for _ in range(rng.randint(2, 4)))
        value = _nest(shape, lambda: _number(rng))
        broken = rng.random() < 0.5
        if broken:
            node = value
            while isinstance(node[0], list) and rng.random() < 0.7:
                node = rng.choice(node)
            i = rng.randrange(len(node))
            node[i] = rng.choice(
                [[node[i]], node[i][0] if isinstance(node[i], list) else 1, True, None, "1", {"a": 1}, [], [1, 2]]
            )
            if rng.random() < 0.3:
                node.append(node[0])
        text = json.dumps({"instances": value}, indent=rng.choice([None, 1]))
        took += _same_reading(text)  # a ragged array read as rows would give an array where orjson's gives an error
    assert took > 150  # the unbroken ones take it


def test_a_text_models_strings_are_not_rows() -> None:
    text = '{"instances": [["a good film"], ["a bad one"]]}'
    assert tensor_json.loads(text) == {"instances": [["a good film"], ["a bad one"]]}


def test_a_text_with_a_lone_surrogate_is_read_by_json_codec() -> None:
    text = '{"note": "' + chr(0xD800) + '", "instances": [[1, 2], [3, 4]]}'
    assert tensor_json.loads(text) == json_codec.loads(text)


LINES = [
    "[[1, 2], [3, 4]]",  # a bare instance
    "[0.5, -1, 2e3]",  # a one-dimensional one (a tabular row)
    '{"id": "a", "instances": [[[1], [2]]]}',
    '{"id": 7, "inputs": [1, 2, 3]}',
    '{"id": 18446744073709551616, "inputs": [1, 2]}',  # an id past 64 bits keeps every digit
    '{"id": 1.5, "inputs": [1, 2]}',
    '{"id": "b", "instances": [[1, 2], [3, 4]]}',  # two instances on a line: an error
    "[[1, 2], [3]]",
    "[[1, true], [3, 4]]",
    "[NaN, 1]",
    "[]",
    "",
    "\ufeff[1, 2]",
    "{not json",
    '{"id": "c", "instances": [{"a": [1, 2]}]}',
    "  [ [ 1 , 2 ] ,\t[ 3 , 4 ] ]  ",
    '{"id": "n", "a\\u0000": 1, "inputs": [1, 2]}',  # a key holding NUL: read as before, not a failed file
]


def _read_all(data: bytes) -> list[tuple[Any, ...]]:
    from botocore.response import StreamingBody

    from maas_core.shared.batch_io import read_jsonl

    return [
        (r.line, r.id, r.error, r.size, _tensor([r.instance]) if r.error is None else None)
        for r in read_jsonl(StreamingBody(io.BytesIO(data), len(data)))
    ]


def test_a_batch_lines_instance_read_into_numpy_gives_what_orjson_gives(monkeypatch) -> None:
    data = "\n".join(LINES).encode() + b"\n"
    fast = _read_all(data)
    assert sum(isinstance(tensor_json.loads_line(line.encode()), (np.ndarray, dict)) for line in LINES) >= 5
    monkeypatch.setattr(tensor_json, "loads_line", lambda raw: None)
    assert fast == _read_all(data)


def _flat_tensor(data: Any) -> tuple[str, Any]:
    """What shared.kserve makes of an input's data: its numbers flat, or the error the checks give."""
    try:
        array = numbers("x", data, FLOAT32, "FP32").reshape(-1)
    except InvalidInput as error:
        return "error", error.to_body()
    return "array", (array.dtype.str, array.tobytes())


def _same_infer_reading(text: str) -> bool:
    fast, plain = tensor_json.loads_infer(text), json_codec.loads(text)
    if not isinstance(plain, dict) or not isinstance(plain.get("inputs"), list):
        assert fast == plain
        return False
    assert list(fast) == list(plain) and {k: v for k, v in fast.items() if k != "inputs"} == {
        k: v for k, v in plain.items() if k != "inputs"
    }
    took = False
    for ours, theirs in zip(fast["inputs"], plain["inputs"], strict=True):
        if isinstance(theirs, dict) and "data" in theirs and _is_rows(ours["data"]):
            took = True
            assert {k: v for k, v in ours.items() if k != "data"} == {k: v for k, v in theirs.items() if k != "data"}
            assert _flat_tensor(ours["data"]) == _flat_tensor(theirs["data"]), text[:200]
        else:
            assert ours == theirs
    return took


def test_open_inference_data_read_into_rows_gives_the_numbers_orjson_gives() -> None:
    """Random inputs, flat or nested data, shapes that hold their numbers or not, some data broken: the fast
    reading gives kserve the same flat numbers (or error) as orjson's, or steps aside."""
    rng = random.Random(1201)
    took = 0
    for _ in range(300):
        inputs = []
        for i in range(rng.randint(1, 3)):
            shape = [rng.randint(1, 4) for _ in range(rng.randint(1, 4))]
            data: Any = _nest(tuple(shape), lambda: _number(rng))
            if rng.random() < 0.5:
                data = np.asarray(data, dtype=object).reshape(-1).tolist()  # flat, as tritonclient sends it
            if rng.random() < 0.2:
                shape[0] += 1  # a shape the data does not fill
            if rng.random() < 0.2:
                data = [data, True] if rng.random() < 0.5 else [*data[:-1], "1"] if data else ["1"]
            tensor = {"name": f"x{i}", "shape": shape, "datatype": "FP32", "data": data}
            inputs.append(dict(rng.sample(list(tensor.items()), 4)) if rng.random() < 0.2 else tensor)
        body = {"id": "r", "inputs": inputs, "outputs": [{"name": "y"}]}
        took += _same_infer_reading(json.dumps(body, indent=rng.choice([None, 2])))
    assert took > 100


@pytest.mark.parametrize(
    "text",
    [
        '{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}',  # short of its shape
        '{"inputs": [{"name": "x", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',  # one dimension
        '{"inputs": [{"name": "x", "shape": [6], "datatype": "FP32", "data": [[1, 2], [3], [4, 5, 6]]}]}',  # ragged
        '{"inputs": [{"name": "x", "shape": [2, true], "datatype": "FP32", "data": [1, 2]}]}',
        '{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}]}',
        '{"inputs": [{"name": "x", "shape": [2, 2], "data": [1, 2, 3, 4], "data": [5, 6, 7, 8]}]}',
        '{"inputs": [{"name": "x", "shape": [1, 1], "parameters": {"binary_data_size": 4}}]}',
        '{"inputs": [{"name": "x", "shape": ' + str([1] * 70) + ', "datatype": "FP32", "data": [1]}]}',
        '{"inputs": {"name": "x"}}',
        '{"inputs": [{"name": "x", "a\\u0000": 1, "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}',
    ],
)
def test_open_inference_bodies_that_cannot_be_rows_are_read_as_before(text: str) -> None:
    assert not _same_infer_reading(text)
