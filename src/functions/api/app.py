"""ApiFunction: the HTTP face of the model registry (API Gateway REST proxy events)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.errors import BadRequest, MaasError
from shared.inference import feeds_from_body, format_predictions, parse_json_body, run
from shared.model_cache import ModelCache

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayRestResolver()

MAX_BODY_BYTES = int(os.environ["MAX_BODY_BYTES"])
MAX_BATCH_SIZE = int(os.environ["MAX_BATCH_SIZE"])
models = ModelCache(bucket=os.environ["MODEL_BUCKET"], alias_ttl_seconds=float(os.environ["ALIAS_TTL_SECONDS"]))


def _ref() -> str | None:
    """An exact version or an alias may be named per request; the default is the production alias."""
    params = app.current_event.query_string_parameters or {}
    return params.get("version") or params.get("alias")


def _body() -> str | None:
    try:
        return app.current_event.decoded_body
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        raise BadRequest("request body is marked base64 but does not decode to UTF-8 text") from None


@app.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok", "loaded": models.loaded()}


@app.get("/models")
@tracer.capture_method
def list_models() -> dict[str, Any]:
    registry = models.registry
    return {"models": [{"name": n, "aliases": registry.list_aliases(n)} for n in registry.list_models()]}


@app.get("/models/<name>")
@tracer.capture_method
def describe_model(name: str) -> dict[str, Any]:
    version = models.resolve(name, _ref())
    registry = models.registry
    return {
        "name": name,
        "version": version,
        "aliases": registry.list_aliases(name),
        "versions": registry.list_versions(name),
        "manifest": registry.read_manifest(name, version),
    }


@app.post("/models/<name>/predict")
@tracer.capture_method
def predict(name: str) -> dict[str, Any]:
    body = parse_json_body(_body(), MAX_BODY_BYTES)
    model = models.get(name, _ref())
    feeds = feeds_from_body(body, model, MAX_BATCH_SIZE)
    started = time.perf_counter()
    outputs = run(model, feeds)
    elapsed_ms = (time.perf_counter() - started) * 1000
    metrics.add_dimension(name="model", value=name)
    metrics.add_metric(name="InferenceMs", unit=MetricUnit.Milliseconds, value=elapsed_ms)
    return {"model": name, "version": model.version, "predictions": format_predictions(model, outputs)}


@app.exception_handler(MaasError)
def handle_domain_error(error: MaasError) -> Response:
    log = logger.warning if error.status < 500 else logger.error
    log("request failed", extra={"code": error.code, "status": error.status, "details": error.details})
    return Response(
        status_code=error.status, content_type=content_types.APPLICATION_JSON, body=json.dumps(error.to_body())
    )


@app.not_found
def handle_not_found(_: Exception) -> Response:
    event = app.current_event
    body = {"error": f"no route for {event.http_method} {event.path}", "code": "route_not_found"}
    return Response(status_code=404, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


@app.exception_handler(Exception)
def handle_unexpected(_: Exception) -> Response:
    logger.exception("unexpected error")
    body = {"error": "internal error; the request id is in the x-amzn-requestid header", "code": "internal_error"}
    return Response(status_code=500, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
