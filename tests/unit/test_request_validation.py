"""shared.request_validation answers every request exactly as Powertools' own request validation does: the
same values reach the route, the same requests are refused with the same errors."""

from __future__ import annotations

import copy
import json
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from pydantic import BaseModel, Field

from maas_core.shared.request_validation import RequestValidation
from tests_support import Context, event


class Payload(BaseModel):
    rows: list[list[float]]
    top_k: int | None = Field(default=None, ge=1, le=10)


class Filters(BaseModel):
    tag: str | None = None
    limit: int = 5


def _resolver(ours: bool) -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)
    if ours:
        app._request_validation_middleware = RequestValidation()

    @app.post("/things/<name>/score")
    def score(
        name: Annotated[str, Path(pattern=r"^[a-z]{1,8}$")],
        body: Annotated[Payload, Body()],
        alias: Annotated[str | None, Query(pattern=r"^[a-z]+$")] = None,
        top_k: Annotated[int | None, Query(ge=1, le=10)] = None,
        ids: Annotated[list[int] | None, Query()] = None,
    ) -> dict[str, Any]:
        return {"name": name, "rows": body.rows, "body_top_k": body.top_k, "alias": alias, "top_k": top_k, "ids": ids}

    @app.get("/things")
    def listing(filters: Annotated[Filters, Query()]) -> dict[str, Any]:
        return filters.model_dump()

    @app.get("/things/<name>")
    def header_route(name: str, tenant: Annotated[str, Header(alias="x-tenant")]) -> dict[str, Any]:
        return {"name": name, "tenant": tenant}

    return app


def _event(method: str, path: str, resource: str, body: Any = None, **query: list[str]) -> dict[str, Any]:
    base = event("predict_digits")
    return {
        **base,
        "httpMethod": method,
        "path": path,
        "resource": resource,
        "pathParameters": None,
        "body": body if body is None or isinstance(body, str) else json.dumps(body),
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
    }


GOOD = {"rows": [[1.0, 2.0]]}
CASES = {
    "valid": _event("POST", "/things/abc/score", "/things/{name}/score", GOOD, alias=["prod"], top_k=["3"]),
    "no query": _event("POST", "/things/abc/score", "/things/{name}/score", GOOD),
    "bad path": _event("POST", "/things/ABC/score", "/things/{name}/score", GOOD),
    "bad alias": _event("POST", "/things/abc/score", "/things/{name}/score", GOOD, alias=["Prod!"]),
    "top_k not a number": _event("POST", "/things/abc/score", "/things/{name}/score", GOOD, top_k=["x"]),
    "top_k too big": _event("POST", "/things/abc/score", "/things/{name}/score", GOOD, top_k=["11"]),
    "a scalar given twice": _event("POST", "/things/abc/score", "/things/{name}/score", GOOD, alias=["a", "b"]),
    "a list query": _event("POST", "/things/abc/score", "/things/{name}/score", GOOD, ids=["1", "2", "3"]),
    "a list with a non-number": _event("POST", "/things/abc/score", "/things/{name}/score", GOOD, ids=["1", "z"]),
    "no body": _event("POST", "/things/abc/score", "/things/{name}/score"),
    "body not JSON": _event("POST", "/things/abc/score", "/things/{name}/score", "{rows"),
    "body of the wrong shape": _event("POST", "/things/abc/score", "/things/{name}/score", {"rows": "x"}),
    "body field out of range": _event("POST", "/things/abc/score", "/things/{name}/score", {**GOOD, "top_k": 0}),
    "several errors at once": _event(
        "POST", "/things/ABC/score", "/things/{name}/score", {"rows": 1}, alias=["!"], top_k=["0"]
    ),
    "a model of query parameters": _event("GET", "/things", "/things", tag=["x"], limit=["7"]),
    "a model of query parameters, refused": _event("GET", "/things", "/things", limit=["many"]),
    "a header parameter": {
        **_event("GET", "/things/abc", "/things/{name}"),
        "headers": {"x-tenant": "t1"},
        "multiValueHeaders": {"x-tenant": ["t1"]},
    },
    "a header parameter missing": {**_event("GET", "/things/abc", "/things/{name}"), "headers": {}},
}


@pytest.mark.parametrize("case", CASES)
def test_a_request_is_validated_as_powertools_validates_it(case: str) -> None:
    theirs = _resolver(ours=False).resolve(copy.deepcopy(CASES[case]), Context())
    ours = _resolver(ours=True).resolve(copy.deepcopy(CASES[case]), Context())
    assert ours["statusCode"] == theirs["statusCode"]
    assert json.loads(ours["body"]) == json.loads(theirs["body"])


def test_the_cases_cover_answers_and_refusals() -> None:
    """The parity above means something only if both kinds of answer are among the cases."""
    app = _resolver(ours=True)
    statuses = {case: app.resolve(copy.deepcopy(e), Context())["statusCode"] for case, e in CASES.items()}
    assert statuses["valid"] == 200
    assert statuses["a list query"] == 200
    assert statuses["a header parameter"] == 200
    assert statuses["top_k too big"] == 422
    assert statuses["several errors at once"] == 422
    assert statuses["a header parameter missing"] == 422


def test_the_route_receives_the_validated_values() -> None:
    response = _resolver(ours=True).resolve(copy.deepcopy(CASES["valid"]), Context())
    assert json.loads(response["body"]) == {
        "name": "abc",
        "rows": [[1.0, 2.0]],
        "body_top_k": None,
        "alias": "prod",
        "top_k": 3,
        "ids": None,
    }
