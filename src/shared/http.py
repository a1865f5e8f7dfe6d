"""Checks on a proxy event's body that must run before any parsing (size, encoding, media type), and the
one parse of it that the resolver then reuses (ARCHITECTURE.md, Serving rules: one parse per body)."""

from __future__ import annotations

import base64
import binascii
import json
import sys
from collections.abc import Callable
from typing import Any

from maas_core.shared import json_codec, tensor_json
from maas_core.shared.errors import BadRequest, MaasError, PayloadTooLarge, UnsupportedMediaType

JSON_TYPES = ("application/json", "application/vnd.api+json")
# Methods whose routes read a body: their Content-Type matters even when the body is empty.
BODY_METHODS = ("POST", "PUT", "PATCH")
PARSE_HEADROOM_FRAMES = 150
# TF Serving's REST server reads every body as JSON whatever its Content-Type, and its reference's
# examples (`curl -d '...'`) send curl's default form type: on its paths that type is read as JSON too.
TF_SERVING_PATHS = "/v1/models"
# Paths of the bodies whose tensors are read into numpy rows where they can be (shared.tensor_json): the
# TensorFlow Serving predict bodies (ours, TF Serving's and KServe v1's) and the Open Inference ones.
PREDICT_SUFFIXES = ("/predict", ":predict")
INFER_SUFFIX = "/infer"
FORM_TYPE = "application/x-www-form-urlencoded"


def _header(event: dict[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value or "")
    return ""


def _set_header(event: dict[str, Any], name: str, value: str) -> None:
    for field in ("headers", "multiValueHeaders"):
        headers = event.get(field) or {}
        for key in [k for k in headers if k.lower() == name]:
            headers[key] = [value] if field == "multiValueHeaders" else value


def check_body(event: dict[str, Any], max_bytes: int) -> Any:
    """Raise a 4xx domain error for a body that must not reach the route; return the body read as JSON
    (None when there is none to read), which the resolver takes instead of parsing the text again.

    A JSON media type in any spelling (``APPLICATION/JSON``, ``application/problem+json``) is
    rewritten to ``application/json``, the one the resolver parses; anything else is refused here
    rather than reaching it. The body is read as JSON once, so that nesting too deep for the parser
    or an integer too long to convert is a 400, not an internal error.
    """
    body = event.get("body")
    content_type = _header(event, "content-type")
    media_type = content_type.split(";")[0].strip().lower()
    if not body and str(event.get("httpMethod", "")).upper() not in BODY_METHODS:
        return None
    # base64 makes a body 4/3 larger; the limit is on what the client sent.
    raw = body or ""
    size = len(raw) * 3 // 4 if event.get("isBase64Encoded") else len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise PayloadTooLarge(
            f"request body is {size} bytes; the limit is {max_bytes}", limit_bytes=max_bytes, received=size
        )
    tf_serving_form = media_type == FORM_TYPE and str(event.get("path") or "").startswith(TF_SERVING_PATHS)
    if media_type and media_type not in JSON_TYPES and not media_type.endswith("+json") and not tf_serving_form:
        raise UnsupportedMediaType(
            f"request bodies are JSON; got Content-Type {media_type!r}",
            expected="application/json",
            received=media_type,
        )
    declared, _, parameters = content_type.partition(";")
    if media_type and declared.strip() != "application/json":
        _set_header(event, "content-type", "application/json" + (f";{parameters}" if parameters else ""))
    if not body or str(event.get("httpMethod", "")).upper() not in BODY_METHODS:
        return None
    text = body
    if event.get("isBase64Encoded"):
        try:
            text = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise BadRequest("request body is marked base64 but does not decode to UTF-8 text") from None
    try:
        return read_json(text, _reader(str(event.get("path") or "")))
    except RecursionError:
        raise BadRequest("request body nests too deeply to be read", expected="JSON") from None
    except ValueError as exc:  # JSONDecodeError, and integers of more than 4300 digits
        reason = "is not valid JSON" if isinstance(exc, json.JSONDecodeError) else "holds a number too long to read"
        raise BadRequest(f"request body {reason}", expected="JSON") from None


def _reader(path: str) -> Callable[[str | bytes], Any]:
    if path.endswith(PREDICT_SUFFIXES):
        return tensor_json.loads
    return tensor_json.loads_infer if path.endswith(INFER_SUFFIX) else json_codec.loads


def read_json(text: str | bytes, loads: Callable[[str | bytes], Any] = json_codec.loads) -> Any:
    """A body read as JSON (shared.json_codec) with less stack than the resolver has where it reads one (it
    reads a base64 body's text again, decoded by itself); ``loads`` may be one of ``shared.tensor_json``'s,
    whose tensors come back as float64 numpy rows.

    Python 3.11 counts the parser's nesting against the recursion limit from the caller's depth, and
    the resolver parses ~50 frames deeper than this check: a body nested just under the limit here
    would still fail there (500). Parsing with the limit lowered by a margin closes that gap; 3.12+
    bounds the parser's nesting by itself, the same at both places.
    """
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit - PARSE_HEADROOM_FRAMES)
    try:
        return loads(text)
    finally:
        sys.setrecursionlimit(limit)


def error_response(error: MaasError) -> dict[str, Any]:
    """A REST proxy response for errors raised before the resolver runs."""
    return {
        "statusCode": error.status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(error.to_body()),
        "isBase64Encoded": False,
    }
