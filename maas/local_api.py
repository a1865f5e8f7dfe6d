"""A local API Gateway (REST, proxy integration) in front of local Lambda containers.

Routes come from the functions' ``Api`` events in template.yaml, chosen as API Gateway chooses: the
path that matches without a greedy ``{proxy+}`` first, then its own method before its ``ANY``; a
greedy path only when no other matches. Each request becomes the proxy event API Gateway would send;
the function's proxy response becomes the HTTP response. Like API Gateway, a request no route takes
(a parent resource no route names included) gets the API's MISSING_AUTHENTICATION_TOKEN gateway
response (API Gateway's 403 "Missing Authentication Token" when it declares none) and a function
error gets 502.

Bodies cross as they do through the API's ``BinaryMediaTypes``: a request whose Content-Type (none:
application/json) is one of them reaches the function base64-encoded, and an answer marked
``isBase64Encoded`` reaches the client as bytes only when its first Accept type (none:
application/json) is one of them, as base64 text otherwise.

Keys are not checked locally (as with ``sam local start-api``), but a request's ``x-api-key`` still
names its caller: the event's ``requestContext.identity.apiKeyId`` is derived from it (a hash, never
the key), as API Gateway puts the matched key's id there, so what is per key (a job's owner) behaves
as deployed. A request without a key has no ``apiKeyId``: every keyless local caller is one caller.
"""

from __future__ import annotations

import base64
import errno
import fnmatch
import functools
import getpass
import hashlib
import json
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from maas.console import Refused
from maas.lambda_runtime import FunctionError, LocalFunction
from maas.template import Route, Template
from maas.template import route as template_route

_USER = getpass.getuser()
T = TypeVar("T")

# What API Gateway takes an absent Content-Type or Accept header for.
DEFAULT_MEDIA_TYPE = "application/json"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's REST payload limit


def api_key_id(headers: dict[str, str]) -> str | None:
    """A stable stand-in for API Gateway's key id: the same key, the same id; the key itself stays out."""
    key = next((v for k, v in headers.items() if k.lower() == "x-api-key"), "")
    return "local" + hashlib.sha256(key.encode()).hexdigest()[:12] if key else None


def _header_safe(value: str) -> bool:
    """A value http.server would write as is: CR or LF in it would end the header block early."""
    return "\r" not in value and "\n" not in value


def binary_media_types(template: Template) -> list[str]:
    """The REST API's BinaryMediaTypes, "~1" read as "/" (as API Gateway reads SAM's spelling)."""
    for resource in template.resources.values():
        if resource.get("Type") == "AWS::Serverless::Api":
            listed = resource.get("Properties", {}).get("BinaryMediaTypes") or []
            return [str(template.resolve(t)).replace("~1", "/") for t in listed]
    return []


def is_binary(header: str | None, media_types: Sequence[str]) -> bool:
    """Whether a Content-Type or Accept value (its first type) is one of the binary media types."""
    first = (header or "").split(",")[0].split(";")[0].strip().lower() or DEFAULT_MEDIA_TYPE
    return any(fnmatch.fnmatchcase(first, pattern.lower()) for pattern in media_types)


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def proxy_event(
    method: str,
    raw_path: str,
    headers: dict[str, str],
    body: bytes,
    route: Route,
    params: dict[str, str],
    stage: str,
    binary_types: Sequence[str] = (),
) -> dict[str, Any]:
    split = urlsplit(raw_path)
    query = parse_qs(split.query, keep_blank_values=True)
    # Locally, bytes that are not UTF-8 text also come base64 (API Gateway would mangle them).
    is_base64 = is_binary(_header(headers, "content-type"), binary_types)
    if not is_base64:
        try:
            text_body = body.decode("utf-8")
        except UnicodeDecodeError:
            is_base64 = True
    if is_base64:
        text_body = base64.b64encode(body).decode()
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


def resource_paths(paths: Iterable[str]) -> set[str]:
    """The API Gateway resources that route paths make: each path and every parent of it (the root
    too). A parent no route names has no method of its own."""
    resources: set[str] = set()
    for path in paths:
        parts = path.strip("/").split("/")
        resources.update("/" + "/".join(parts[:i]) for i in range(len(parts) + 1))
    return resources


@functools.lru_cache(maxsize=16)
def _exact_resources(paths: tuple[str, ...]) -> list[tuple[str, re.Pattern[str]]]:
    """The resources without a greedy variable, fewest variables first, each with its pattern: made
    once per route table, not per request."""
    exact = sorted((p for p in resource_paths(paths) if "+}" not in p), key=lambda p: (p.count("{"), p))
    return [(p, template_route("ANY", p).pattern) for p in exact]


def choose_route(routes: Sequence[tuple[Route, T]], method: str, path: str) -> tuple[Route, T, dict[str, str]] | None:
    """API Gateway's choice: the resource that matches without a greedy variable (fewest variables
    first) before one with it; on the resource chosen, its own method before ANY. A resource that
    matches but takes neither method, such as a parent no route names (/v2/models), is no route:
    API Gateway never falls back from it to /{proxy+}."""
    found = [(route, fn, params) for route, fn in routes if (params := route.match(method, path)) is not None]
    exact = [p for p, pattern in _exact_resources(tuple(r.path for r, _ in routes)) if pattern.fullmatch(path)]
    candidates = [f for f in found if f[0].path == exact[0]] if exact else found
    candidates.sort(key=lambda f: ("+}" in f[0].path, f[0].method == "ANY"))
    return candidates[0] if candidates else None


def missing_route_response(template: Template | None) -> tuple[int, dict[str, Any]]:
    """What API Gateway answers a request no route takes: the API's MISSING_AUTHENTICATION_TOKEN
    gateway response (its status and JSON body), or API Gateway's own 403 when it declares none."""
    for resource in template.resources.values() if template else ():
        if resource.get("Type") == "AWS::Serverless::Api":
            declared = (resource.get("Properties", {}).get("GatewayResponses") or {}).get(
                "MISSING_AUTHENTICATION_TOKEN"
            )
            if declared:
                body = json.loads(declared["ResponseTemplates"]["application/json"])
                return int(declared["StatusCode"]), body
    return 403, {"message": "Missing Authentication Token"}


class _Server(ThreadingHTTPServer):
    # Python's default listen backlog is 5: 50 clients connecting at once would be refused.
    request_queue_size = 128
    daemon_threads = True


def bind(port: int) -> _Server:
    """The API's socket, bound and listening before anything else starts (its handler is set by
    LocalApi): a port in use is refused here, in one line, before an emulator or the S3 server runs."""
    try:
        return _Server(("127.0.0.1", port), BaseHTTPRequestHandler)
    except PermissionError:
        raise Refused(f"port {port} needs privileges on this machine; pick one above 1023 with --port") from None
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        raise Refused(
            f"port {port} is in use on 127.0.0.1; stop what listens there or pick another with --port"
        ) from None


class LocalApi:
    def __init__(
        self,
        functions: list[LocalFunction],
        stage: str,
        port: int = 0,
        quiet: bool = False,
        binary_types: Sequence[str] | None = None,
        server: _Server | None = None,
    ) -> None:
        """``binary_types``: the API's BinaryMediaTypes; by default those of the functions' template.yaml.
        ``server``: a socket ``bind`` made (else ``port`` is bound here)."""
        self.routes = [(route, fn) for fn in functions for route in fn.spec.routes]
        self.stage = stage
        self.quiet = quiet
        roots = {fn.spec.project_root for fn in functions if getattr(fn.spec, "project_root", None)}
        templates = [Template(root / "template.yaml") for root in roots if root]
        if binary_types is None:
            found = [binary_media_types(template) for template in templates]
            binary_types = found[0] if found else []
        self.missing_route = missing_route_response(templates[0] if templates else None)
        self.binary_types = list(binary_types)
        self.server = server or bind(port)
        self.server.RequestHandlerClass = self._handler_class()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def match(self, method: str, path: str) -> tuple[Route, LocalFunction, dict[str, str]] | None:
        return choose_route(self.routes, method, path)

    def start(self) -> LocalApi:
        # A short poll: stop() waits for the loop to look, and a stack stops in a fraction of a second.
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
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
                if path.startswith(f"/{api.stage}/"):
                    # Deployed URLs carry the stage: accept both forms. The stage is never v1 or v2
                    # (template.yaml's StageName), so /v1/models/... is always TF Serving's path.
                    path = path[len(api.stage) + 1 :]
                    self.path = self.path[len(api.stage) + 1 :]
                found = api.match(self.command, path)
                if found is None:
                    self._json(*api.missing_route)
                    return
                route, fn, params = found
                headers = {k: v for k, v in self.headers.items()}
                event = proxy_event(self.command, self.path, headers, body, route, params, api.stage, api.binary_types)
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
                as_bytes = result.get("isBase64Encoded") and is_binary(_header(headers, "accept"), api.binary_types)
                payload = base64.b64decode(raw) if as_bytes else str(raw).encode()
                self._send(int(result["statusCode"]), payload, out_headers)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

            def __getattr__(self, name: str) -> Any:
                # Any other method (TRACE, QUERY, ...) is routed too: API Gateway answers a method no
                # resource declares 403, where http.server would answer 501 itself.
                if name.startswith("do_"):
                    return self._handle
                raise AttributeError(name)

        return Handler
