"""Checks on a proxy event's body that must run before any parsing: size, encoding, media type."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from shared.errors import BadRequest, MaasError, PayloadTooLarge, UnsupportedMediaType

JSON_TYPES = ("application/json", "application/vnd.api+json")


def _header(event: dict[str, Any], name: str) -> str:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value or "")
    return ""


def check_body(event: dict[str, Any], max_bytes: int) -> None:
    """Raise a 4xx domain error for a body that must not reach the JSON parser."""
    body = event.get("body")
    if not body:
        return
    # base64 makes a body 4/3 larger; the limit is on what the client sent.
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode() if isinstance(body, str) else body)
    if size > max_bytes:
        raise PayloadTooLarge(
            f"request body is {size} bytes; the limit is {max_bytes}", limit_bytes=max_bytes, received=size
        )
    media_type = _header(event, "content-type").split(";")[0].strip().lower()
    if media_type and media_type not in JSON_TYPES and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"request bodies are JSON; got Content-Type {media_type!r}",
            expected="application/json",
            received=media_type,
        )
    if event.get("isBase64Encoded"):
        try:
            base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise BadRequest("request body is marked base64 but does not decode to UTF-8 text") from None


def error_response(error: MaasError) -> dict[str, Any]:
    """A REST proxy response for errors raised before the resolver runs."""
    return {
        "statusCode": error.status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(error.to_body()),
        "isBase64Encoded": False,
    }
