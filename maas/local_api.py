"""A local API Gateway (REST, proxy integration) in front of local Lambda containers.

Routes come from the functions' ``Api`` events in template.yaml. Each request becomes the proxy
event API Gateway would send; the function's proxy response becomes the HTTP response. Like API
Gateway, an unknown route gets 403 "Missing Authentication Token" and a function error gets 502.

Keys are not checked locally (as with ``sam local start-api``), but a request's ``x-api-key`` still
names its caller: the event's ``requestContext.identity.apiKeyId`` is derived from it (a hash, never
the key), as API Gateway puts the matched key's id there, so what is per key (a job's owner) behaves
as deployed. A request without a key has no ``apiKeyId``: every keyless local caller is one caller.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from maas.lambda_runtime import FunctionError, LocalFunction
from maas.template import Route

_USER = getpass.getuser()

TEXT_TYPES = ("application/json", "text/", "application/xml", "application/x-www-form-urlencoded")
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's REST payload limit


def api_key_id(headers: dict[str, str]) -> str | None:
    """A stable stand-in for API Gateway's key id: the same key, the same id; the key itself stays out."""
    key = next((v for k, v in headers.items() if k.lower() == "x-api-key"), "")
    return "local" + hashlib.sha256(key.encode()).hexdigest()[:12] if key else None


def _header_safe(value: str) -> bool:
    """A value http.server would write as is: CR or LF in it would end the header block early."""
    return "\r" not in value and "\n" not in value


def proxy_event(
    method: str, raw_path: str, headers: dict[str, str], body: bytes, route: Route, params: dict[str, str], stage: str
) -> dict[str, Any]:
    split = urlsplit(raw_path)
    query = parse_qs(split.query, keep_blank_values=True)
    content_type = headers.get("content-type", headers.get("Content-Type", ""))
    is_text = not body or any(content_type.startswith(t) for t in TEXT_TYPES) or not content_type
    text_body: str | None
    if is_text:
        try:
            text_body, is_base64 = body.decode("utf-8"), False
        except UnicodeDecodeError:
            text_body, is_base64 = base64.b64encode(body).decode(), True
    else:
        text_body, is_base64 = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "resource": route.path,
        "path": split.path,
        "httpMethod": method,
        "headers": headers or None,
        "multiValueHeaders": {k: [v] for k, v in headers.items()} or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": route.path,
            "httpMethod": method,
            "path": f"/{stage}{split.path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(now * 1000),
            "accountId": "123456789012",
            "apiId": "local",
            "protocol": "HTTP/1.1",
            # No IAM signature check locally (as with sam local start-api): the caller is the local user.
            "identity": {
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent"),
                "caller": f"local:{_USER}",
                "apiKeyId": api_key_id(headers),
            },
        },
        "body": text_body if body else None,
        "isBase64Encoded": is_base64,
    }


class _Server(ThreadingHTTPServer):
    # Python's default listen backlog is 5: 50 clients connecting at once would be refused.
    request_queue_size = 128
    daemon_threads = True


class LocalApi:
    def __init__(self, functions: list[LocalFunction], stage: str, port: int, quiet: bool = False) -> None:
        self.routes = [(route, fn) for fn in functions for route in fn.spec.routes]
        self.stage = stage
        self.quiet = quiet
        self.server = _Server(("127.0.0.1", port), self._handler_class())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def match(self, method: str, path: str) -> tuple[Route, LocalFunction, dict[str, str]] | None:
        for route, fn in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, fn, params
        return None

    def start(self) -> LocalApi:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                if not api.quiet:
                    sys.stderr.write(f"[local-api] {self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self.close_connection = True
                    self._json(413, {"message": "Request Too Long"})
                    return
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                if path.startswith(f"/{api.stage}/"):  # deployed URLs carry the stage: accept both forms
                    path = path[len(api.stage) + 1 :]
                    self.path = self.path[len(api.stage) + 1 :]
                found = api.match(self.command, path)
                if found is None:
                    self._json(403, {"message": "Missing Authentication Token"})
                    return
                route, fn, params = found
                headers = {k: v for k, v in self.headers.items()}
                event = proxy_event(self.command, self.path, headers, body, route, params, api.stage)
                try:
                    result = fn.invoke(event)
                except (FunctionError, OSError) as exc:
                    sys.stderr.write(f"[local-api] function error: {exc}\n")
                    self._json(502, {"message": "Internal server error"})
                    return
                if not isinstance(result, dict) or "statusCode" not in result:
                    self._json(502, {"message": "Internal server error"})
                    return
                out_headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
                for key, values in (result.get("multiValueHeaders") or {}).items():
                    out_headers[key] = ", ".join(str(v) for v in values)
                out_headers["x-amzn-RequestId"] = event["requestContext"]["requestId"]
                if not all(_header_safe(k) and _header_safe(v) for k, v in out_headers.items()):
                    # Written as is, it would end the headers early and the client would wait for a body that
                    # never comes: answer as a gateway does for a response it cannot pass on.
                    sys.stderr.write("[local-api] function returned a header with CR or LF\n")
                    self._json(502, {"message": "Internal server error"})
                    return
                raw = result.get("body") or ""
                payload = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
                self._send(int(result["statusCode"]), payload, out_headers)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

            def __getattr__(self, name: str) -> Any:
                # Any other method (TRACE, QUERY, ...) is routed too: API Gateway answers a method no
                # resource declares 403, where http.server would answer 501 itself.
                if name.startswith("do_"):
                    return self._handle
                raise AttributeError(name)

        return Handler
