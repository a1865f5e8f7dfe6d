"""AdminFunction: changes to the model registry over HTTP (API Gateway REST, IAM auth on every route).

Separate from ApiFunction so that only this function may write the registry: the serving function
keeps read-only access. Who made a change is the caller's IAM identity, kept in the alias history.
"""

import os
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from maas_core.shared import rest_errors
from maas_core.shared.errors import InvalidRequest, MaasError
from maas_core.shared.http import check_body, error_response
from maas_core.shared.registry import KEEP, Registry, check_alias

logger = Logger()
tracer = Tracer()
metrics = Metrics()

MAX_BODY_BYTES = int(os.environ["MAX_BODY_BYTES"])
MODEL_BUCKET = os.environ["MODEL_BUCKET"]
app = APIGatewayRestResolver(enable_validation=True)


@cache
def _registry() -> Registry:
    """Built on first use: nothing reaches S3 at import."""
    return Registry(MODEL_BUCKET)


class CanarySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(max_length=40, description="the version (or its number) that takes the canary's share")
    weight: float = Field(gt=0, lt=1, description="share of the alias's requests it answers, e.g. 0.1")


class AliasChange(BaseModel):
    """Any of: a new version, a canary (null ends it). Applied in one compare-and-swap."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(default=None, max_length=40, description="the version (or its number) the alias names")
    canary: CanarySpec | None = Field(default=None, description="a second version and its share; null ends it")
    reason: str = Field(default="", max_length=500, description="why, kept in the alias history")
    if_match: str | None = Field(default=None, max_length=80, description="apply only if the alias has this ETag")


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500)
    if_match: str | None = Field(default=None, max_length=80)


def _actor() -> str:
    """The caller's IAM identity (API Gateway verified its signature); locally there is none."""
    identity = app.current_event.request_context.identity
    return identity.user_arn or identity.caller or identity.user or "unknown"


def _record(record: Any) -> dict[str, Any]:
    metrics.add_metric(name="AliasChanges", unit=MetricUnit.Count, value=1)
    logger.info("alias changed", extra={"alias": record.body, "etag": record.etag})
    return {**record.body, "etag": record.etag}


@app.get("/models/<name>/aliases/<alias>", tags=["admin"])
def read_alias(name: str, alias: str) -> dict[str, Any]:
    record = _registry().read_alias(name, check_alias(alias))
    return {**record.body, "etag": record.etag}


@app.put("/models/<name>/aliases/<alias>", tags=["admin"])
@tracer.capture_method
def change_alias(name: str, alias: str, body: Annotated[AliasChange, Body()]) -> dict[str, Any]:
    given = body.model_fields_set
    if "version" not in given and "canary" not in given:
        raise InvalidRequest("nothing to change", expected="version and/or canary", received=sorted(given))
    canary: Any = KEEP
    if "canary" in given:
        canary = body.canary.model_dump() if body.canary else None
    record = _registry().update_alias(
        name,
        check_alias(alias),
        version=body.version or None,  # a version or its number: the registry checks and resolves it
        canary=canary,
        actor=_actor(),
        reason=body.reason,
        if_match=body.if_match,
    )
    return _record(record)


@app.post("/models/<name>/aliases/<alias>/rollback", tags=["admin"])
@tracer.capture_method
def rollback_alias(name: str, alias: str, body: Annotated[Rollback, Body()]) -> dict[str, Any]:
    record = _registry().rollback(
        name, check_alias(alias), actor=_actor(), reason=body.reason or "rollback", if_match=body.if_match
    )
    return _record(record)


@app.get("/models/<name>/aliases/<alias>/history", tags=["admin"])
def alias_history(name: str, alias: str) -> dict[str, Any]:
    return {"model": name, "alias": alias, "changes": _registry().alias_history(name, check_alias(alias))}


@app.delete("/models/<name>/versions/<version>", tags=["admin"])
@tracer.capture_method
def delete_version(name: str, version: str) -> dict[str, Any]:
    """``version`` may be its number: the response and the log name the version it was."""
    exact = _registry().exact_version(name, version)
    _registry().delete_version(name, exact)
    logger.info("version deleted", extra={"model": name, "version": exact, "actor": _actor()})
    return {"model": name, "version": exact, "deleted": True}


rest_errors.register(app, logger)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        check_body(event, MAX_BODY_BYTES)
    except MaasError as error:
        return error_response(error)
    return app.resolve(event, context)
