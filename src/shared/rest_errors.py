"""Errors of a Powertools REST resolver, mapped once for every function behind the API.

Domain errors keep their status and stable code; envelope problems found by the route's pydantic
validation become 400 (unreadable body) or 422 (what field, what was expected, what came); a request
no route takes is a JSON 404, or a 405 with Allow for a path the API serves with other methods;
anything unexpected is a 500 without a trace or exception text.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from maas_core.shared.errors import BadRequest, InvalidName, InvalidRequest, MaasError

# AdminFunction's routes: the only methods of these paths API Gateway hands to it (IAM-signed;
# templates/serving.yaml's AdminFunction events). Every other method of the paths reaches ApiFunction
# (their ANY events), whose 405 lists these in Allow beside its own. The one table of them: the
# template tests hold AdminFunction's events, and the admin tests its resolver, to it.
ADMIN_ROUTES: dict[str, tuple[str, ...]] = {
    "/models/<name>/aliases/<alias>": ("GET", "PUT"),
    "/models/<name>/aliases/<alias>/rollback": ("POST",),
    "/models/<name>/aliases/<alias>/history": ("GET",),
    "/models/<name>/versions/<version>": ("DELETE",),
}
_ADMIN_RULES = [(APIGatewayRestResolver._compile_regex(path), methods) for path, methods in ADMIN_ROUTES.items()]


def json_error(status: int, body: dict[str, Any]) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def no_route(app: Any) -> Response:
    """The answer for a request no route of ``app`` takes: 405 with Allow for a path the API serves
    with other methods (``app``'s routes and AdminFunction's), otherwise 404 route_not_found
    (ARCHITECTURE.md, "Serving rules")."""
    event = app.current_event
    path, method = event.path, event.http_method
    allowed = {r.method for r in app._static_routes + app._dynamic_routes if r.rule.match(path)}
    allowed.update(m for rule, methods in _ADMIN_RULES if rule.match(path) for m in methods)
    if not allowed:
        return json_error(404, {"error": f"no route for {method} {path}", "code": "route_not_found"})
    listed = sorted(allowed)
    response = json_error(
        405,
        {
            "error": f"{method} is not allowed on {path}; it takes {', '.join(listed)}",
            "code": "method_not_allowed",
            "details": {"allowed": listed},
        },
    )
    response.headers["Allow"] = ", ".join(listed)
    return response


def validation_error(error: RequestValidationError) -> MaasError:
    """The domain error a failed request validation stands for."""
    problems = error.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return BadRequest("request body is not valid JSON", expected="JSON")
    if any(p.get("type") == "missing" and tuple(p.get("loc", ())) == ("body",) for p in problems):
        return BadRequest("request body is empty; expected a JSON object", expected="JSON")
    # Only names carry a pattern (model, alias, version, job id): a malformed one is the 400 the
    # registry's own checks give, whether it came in the path, the query or a job body.
    for p in problems:
        if p.get("type") == "string_pattern_mismatch":
            field = str(p.get("loc", ("", "name"))[-1])
            pattern = (p.get("ctx") or {}).get("pattern")
            received = p.get("input")
            return InvalidName(
                f"{field} must match {pattern}",
                field=field,
                expected=pattern,
                received=received[:64] if isinstance(received, str) else None,
            )
    details = [
        {
            "field": ".".join(str(part) for part in p.get("loc", ())),
            "expected": p.get("msg"),
            "received": repr(p.get("input"))[:80] if p.get("input") not in (None, {}) else None,
        }
        for p in problems[:10]
    ]
    first = details[0] if details else {"field": "body", "expected": "a valid request"}
    return InvalidRequest(f"{first['field']}: {first['expected']}", errors=details)


def register(app: Any, logger: Any) -> None:
    """Install the mapping on a resolver (its exception handlers and its not-found handler)."""

    @app.exception_handler(MaasError)
    def handle_domain_error(error: MaasError) -> Response:
        log = logger.warning if error.status < 500 else logger.error
        log("request failed", extra={"code": error.code, "status": error.status})
        return json_error(error.status, error.to_body())

    @app.exception_handler(RequestValidationError)
    def handle_envelope_error(error: RequestValidationError) -> Response:
        return handle_domain_error(validation_error(error))

    @app.not_found
    def handle_not_found(_: Exception) -> Response:
        return no_route(app)

    @app.exception_handler(Exception)
    def handle_unexpected(_: Exception) -> Response:
        logger.exception("unexpected error")
        return json_error(
            500, {"error": "internal error; the request id is in the x-amzn-requestid header", "code": "internal_error"}
        )
