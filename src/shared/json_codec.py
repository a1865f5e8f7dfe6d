"""JSON in and out of the request path: orjson, with the json module for what orjson will not do.

orjson reads 32 digits' 2,048 numbers in about half the json module's time (bench/results.md, the
handler's overhead). It refuses what the json module reads (NaN, Infinity, 1e999, lone surrogates,
nesting deeper than 1,024) and cannot write some values (keys that are not strings, unknown types):
those go through the json module, so every body gets the answer it got before, only sooner.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def dumps_bytes(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes; the json module (NaN refused) writes what orjson cannot, such as an
    integer past 64 bits that a client gave as a row's id."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def dumps(value: Any) -> str:
    """Compact JSON (numpy arrays as lists), with Powertools' encoder as its resolver uses it for the rest."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        from aws_lambda_powertools.shared.json_encoder import Encoder

        return json.dumps(value, separators=(",", ":"), cls=Encoder)
