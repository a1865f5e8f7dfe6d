"""ApiFunction: the HTTP face of the model registry (API Gateway REST proxy events).

Three conventions clients already speak: TensorFlow Serving's REST API (and KServe v1) under
/v1/models, the project's richer TF Serving-style bodies under /models, and the Open Inference
Protocol (KServe v2) under /v2. All run the same inference core.
"""

# ruff: noqa: E402 - the preload starts between the imports, so its download overlaps the later ones

import gc

# INIT makes only what lives as long as the environment: no collection until its end, where it is frozen
# (shared.model_cache.making_long_lived says why).
gc.disable()

import math
import os
import time
import uuid
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Annotated, Any

from maas_core.shared.model_cache import LoadedModel, ModelCache, long_lived_made
from maas_core.shared.preload import Preload

# Before the heavier imports below: PRELOAD_MODELS download while they run (ARCHITECTURE.md, Serving:
# preloading); on_load is set once the metrics it records exist.
models = ModelCache(
    bucket=os.environ["MODEL_BUCKET"],
    alias_ttl_seconds=float(os.environ["ALIAS_TTL_SECONDS"]),
    optimized_dir=os.environ["OPTIMIZED_MODEL_DIR"],
)
preload = Preload(models, os.environ.get("PRELOAD_MODELS", "")).start()

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from maas_core.shared import binary_tensors, jobs, kserve, rest_errors, snapstart, tfserving
from maas_core.shared.aws import s3_client
from maas_core.shared.errors import MaasError
from maas_core.shared.http import check_body, error_response, read_json
from maas_core.shared.inference import feeds_from_body, format_outputs, format_predictions, run
from maas_core.shared.json_codec import dumps
from maas_core.shared.layout import check_alias, check_version_ref
from maas_core.shared.openapi import PublishedModels, add_model_examples
from maas_core.shared.registry import DEFAULT_ALIAS, Registry
from maas_core.shared.request_validation import RequestValidation
from maas_core.shared.schemas import (
    ALIAS_PATTERN,
    JOB_ID_PATTERN,
    NAME_PATTERN,
    VERSION_REF_PATTERN,
    ErrorBody,
    InferRequest,
    JobRequest,
    PredictRequest,
    error_responses,
)

logger = Logger()
# One subsegment per request, the handler's (with botocore's own for each S3 call it makes): a subsegment per
# route as well cost a traced warm prediction 0.04 ms of its 0.27 (X-Ray streams each one as it closes; timed
# in-process with tracing active against a UDP socket on 127.0.0.1 for the daemon). API Gateway's segment
# names the route.
tracer = Tracer()
metrics = Metrics()

MAX_BODY_BYTES = int(os.environ["MAX_BODY_BYTES"])
MAX_BATCH_SIZE = int(os.environ["MAX_BATCH_SIZE"])
CORS_ALLOW_ORIGIN = os.environ["CORS_ALLOW_ORIGIN"]
ALIAS_TTL_SECONDS = float(os.environ["ALIAS_TTL_SECONDS"])
# How long a successful registry read keeps /v2/health/ready at 200 without reading S3 again.
READY_TTL_SECONDS = 5.0
SERVICE_VERSION = "0.1.0"
# Which execution environment answered: a new id means a new (cold) container.
CONTAINER_ID = uuid.uuid4().hex[:12]


class Api(APIGatewayRestResolver):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Powertools' request validation with its per-route work done once (shared.request_validation).
        self._request_validation_middleware = RequestValidation()
        self.published = PublishedModels(ttl_seconds=ALIAS_TTL_SECONDS)
        self._documents: dict[str, tuple[Any, Any]] = {}
        self._swagger: dict[str, Any] | None = None

    def enable_swagger(self, **kwargs: Any) -> None:
        """/swagger, registered on the first request for its path, not during INIT: Powertools' enable_swagger
        imports its OpenAPI models, about 50 ms of every cold start (python3.12, the sam build package) that no
        other route needs (validation does not; /openapi.json imports them when it is asked)."""
        self._swagger = kwargs

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        # Any method: a POST to /swagger still finds its route and answers 405 with Allow: GET.
        if self._swagger is not None and str(event.get("path") or "").rstrip("/") == self._swagger["path"]:
            super().enable_swagger(**self._swagger)
            self._swagger = None
        return super().resolve(event, context)

    def get_openapi_schema(self, **kwargs: Any) -> Any:
        """The generated document, plus an example body per published model (from its manifest),
        built again only when a model's production version changed (see shared.openapi)."""
        state, manifests = self.published.current(models)
        options = repr(sorted(kwargs.items()))  # /openapi.json and /swagger (with its server) differ
        cached = self._documents.get(options)
        if cached is None or cached[0] != state:
            cached = (state, add_model_examples(super().get_openapi_schema(**kwargs), manifests))
            self._documents[options] = cached
        return cached[1]


# This request's body as check_body read it: (the event's body, its value).
_parsed: ContextVar[tuple[Any, Any] | None] = ContextVar("parsed", default=None)


def _read_body(text: str) -> Any:
    """The resolver's JSON parser: the body check_body already read, when this is its text (each body is parsed
    once: ARCHITECTURE.md, Serving rules: one parse per body)."""
    held = _parsed.get()
    if held is not None and held[0] is text:
        return held[1]
    return read_json(text)


app = Api(
    enable_validation=True,
    serializer=dumps,
    json_body_deserializer=_read_body,
    cors=CORSConfig(allow_origin=CORS_ALLOW_ORIGIN, allow_headers=["X-Api-Key"]) if CORS_ALLOW_ORIGIN else None,
)
app.enable_swagger(path="/swagger", title="MaaS model API", version=SERVICE_VERSION)


# Which version answered this request and as what (stable, canary or pinned); read once the response is built.
_served: ContextVar[dict[str, str] | None] = ContextVar("served", default=None)
# A binary-extension request's input bytes by input index (shared.binary_tensors); None for JSON.
_binary_inputs: ContextVar[dict[int, bytes] | None] = ContextVar("binary_inputs", default=None)
# The routes whose body may come in the binary tensor data extension.
BINARY_RESOURCES = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer")


def _record(metric: str, value_ms: float) -> None:
    """A timing of this request; its model, version and variant dimensions were set when it was served."""
    metrics.add_metric(name=metric, unit=MetricUnit.Milliseconds, value=value_ms)


def _mark_served(name: str, version: str, variant: str) -> None:
    """Which version answers: its metric dimensions and response headers. Only ever called with a
    version the registry gave (an alias object or a loaded manifest), never a request's string: an
    unknown name must not become a new custom metric, nor a request string a response header."""
    _served.set({"model": name, "version": version, "variant": variant})
    for dimension, value in (("model", name), ("version", version), ("variant", variant)):
        metrics.add_dimension(name=dimension, value=value)


def _serve(name: str, ref: str | None, request_id: str | None = None) -> LoadedModel:
    """The model that answers this request; with a canary on the alias, split by its weight."""
    request_id = request_id or app.current_event.headers.get("X-Request-Id")  # case-insensitive
    version, variant = models.pick(name, ref, request_id)
    if variant != "pinned":
        # An alias object named this version: counted even if it fails to load (the canary alarm reads it).
        _mark_served(name, version, variant)
    try:
        model = models.load_picked(name, ref, version, variant)
    except MaasError as error:
        # A pinned version that exists but fails to load (a corrupt model) is counted as that version's
        # 5xx; an unknown one is not (its manifest must read before its name becomes a dimension).
        if variant == "pinned" and error.status >= 500 and _exists(name, version):
            _mark_served(name, version, variant)
        raise
    if variant == "pinned":
        _mark_served(model.name, model.manifest.version, variant)  # it exists: its manifest loaded
    return model


def _exists(name: str, version: str) -> bool:
    try:
        return models.registry.read_manifest(name, version).version == version
    except MaasError:
        return False


def _count_served(response: dict[str, Any]) -> None:
    """Per-version request and 5xx counts, the canary's in a metric of their own (its alarm reads it),
    and the version that answered in the response headers."""
    served = _served.get()
    if served is None:
        return
    failed = int(response.get("statusCode", 500) >= 500)
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=failed)
    if served["variant"] == "canary":
        for metric, value in (("CanaryRequests", 1), ("CanaryErrors", failed)):
            with single_metric(name=metric, unit=MetricUnit.Count, value=value) as canary:
                canary.add_dimension(name="variant", value="canary")
    headers = response.setdefault("multiValueHeaders", {})
    headers["X-Model-Version"] = [served["version"]]
    headers["X-Model-Variant"] = [served["variant"]]


models.on_load = lambda model: _record("ModelLoadMs", model.load_ms)


def _before_snapshot() -> None:
    """SnapStart: the snapshot holds what PRELOAD_MODELS loaded (INIT waited for it: shared.preload)."""
    preload.wait()
    logger.info("models loaded before the snapshot", extra={"loaded": models.loaded()})


def _after_restore() -> None:
    global CONTAINER_ID
    snapstart.renew_shared_state()
    models.renew()
    CONTAINER_ID = uuid.uuid4().hex[:12]  # each restored copy is its own execution environment


snapstart.register(_before_snapshot, _after_restore)

# What each kind of route can answer besides its success (the README's error table).
LISTING = error_responses(503)
NAMED = error_responses(400, 404, 422, 503)  # names a model, version or job
WITH_BODY = error_responses(400, 404, 413, 415, 422, 503)

# Patterns (not only the registry's checks) so that the OpenAPI document says what a name may be
# and a client or fuzzer can generate valid ones; a mismatch is 400 invalid_name (shared.rest_errors).
Name = Annotated[str, Path(description="model name", pattern=NAME_PATTERN)]
Version = Annotated[str, Path(description="YYYYMMDDTHHMMSSZ-<8 hex> or version number", pattern=VERSION_REF_PATTERN)]
JobId = Annotated[str, Path(description="job id (32 hex characters)", pattern=JOB_ID_PATTERN)]
AliasQuery = Annotated[str | None, Query(description="alias to resolve (default: production)", pattern=ALIAS_PATTERN)]
VersionQuery = Annotated[
    str | None, Query(description="exact version or version number (overrides alias)", pattern=VERSION_REF_PATTERN)
]
TopK = Annotated[int | None, Query(description="classifiers: also return the k best labels", ge=1, le=1000)]


def _ref(alias: str | None, version: str | None) -> str | None:
    """?version= wins over ?alias=; a version (or version number) that is not one is refused, never looked up
    as an alias."""
    return check_version_ref(version) if version is not None else alias


def _infer(model: LoadedModel, feeds: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    outputs = run(model, feeds)
    _record("InferenceMs", (time.perf_counter() - started) * 1000)
    return outputs


def _predict(name: str, ref: str | None, body: PredictRequest, top_k: int | None) -> dict[str, Any]:
    model = _serve(name, ref)
    # The tensors as parsed, not through model_dump: it would walk every number of them again.
    request = {key: value for key in ("instances", "inputs") if (value := getattr(body, key)) is not None}
    k = top_k or body.top_k
    outputs = _infer(model, feeds_from_body(request, model, MAX_BATCH_SIZE))
    if "instances" in request:
        return {"model": name, "version": model.version, "predictions": format_predictions(model, outputs, k)}
    return {"model": name, "version": model.version, "outputs": format_outputs(model, outputs, k)}


# -- TensorFlow Serving style -------------------------------------------------------------
@app.get("/health", tags=["health"])
def health() -> dict[str, Any]:
    return {"status": "ok", "container": CONTAINER_ID, "loaded": models.loaded()}


@app.get("/models", tags=["models"], responses=LISTING)
def list_models() -> dict[str, Any]:
    registry = models.registry
    return {"models": [{"name": n, "aliases": registry.list_aliases(n)} for n in registry.list_models()]}


def _describe(name: str, version: str) -> dict[str, Any]:
    registry = models.registry
    manifest = registry.read_manifest(name, version)
    aliases = registry.alias_records(name)
    return {
        "name": name,
        "version": version,
        "version_number": registry.number_of(manifest),  # None: published before numbers, not numbered yet
        "aliases": {alias: record.version for alias, record in aliases.items()},
        "canaries": {alias: record.body["canary"] for alias, record in aliases.items() if record.canary_version},
        "versions": registry.list_versions(name),
        "manifest": manifest.to_json(),
    }


@app.get("/models/<name>", tags=["models"], responses=NAMED)
def describe_model(name: Name, alias: AliasQuery = None, version: VersionQuery = None) -> dict[str, Any]:
    return _describe(name, models.resolve(name, _ref(alias, version)))


@app.get("/models/<name>/versions/<version>", tags=["models"], responses=NAMED)
def describe_version(name: Name, version: Version) -> dict[str, Any]:
    return _describe(name, models.resolve(name, check_version_ref(version)))


@app.post("/models/<name>/predict", tags=["predict"], responses=WITH_BODY)
def predict(
    name: Name,
    body: Annotated[PredictRequest, Body()],
    alias: AliasQuery = None,
    version: VersionQuery = None,
    top_k: TopK = None,
) -> dict[str, Any]:
    return _predict(name, _ref(alias, version), body, top_k)


@app.post("/models/<name>/versions/<version>/predict", tags=["predict"], responses=WITH_BODY)
def predict_version(
    name: Name, version: Version, body: Annotated[PredictRequest, Body()], top_k: TopK = None
) -> dict[str, Any]:
    return _predict(name, check_version_ref(version), body, top_k)


# -- TensorFlow Serving REST API and KServe v1 (shared.tfserving) ---------------------------
# Their colon paths (/v1/models/m:predict) cannot be API Gateway resources: they reach this function
# through the template's catch-all (/{proxy+}). A <segment> also matches ":", so "digits:predict"
# splits by backtracking. The last segment of a GET route is also matched by such a verb path
# ("digits:predict" asked with GET): its pattern takes one, and the route answers 404 route_not_found,
# not 400 invalid_name.


def _or_verb_path(pattern: str) -> str:
    """The pattern, or any segment with a colon (also percent-encoded: the local API passes paths as sent)."""
    return f"^({pattern.removeprefix('^').removesuffix('$')}|.*(:|%3[Aa]).*)$"


TFName = Annotated[str, Path(description="model name (with ':', no route)", pattern=_or_verb_path(NAME_PATTERN))]
# TF Serving pins a version as /versions/<number or version> or /labels/<alias>: one route per kind of
# call, its <kind> and <ref> checked by _tf_ref (an unknown kind is a 404, a malformed ref a 400).
TFRefKind = Annotated[str, Path(description="versions or labels")]
TFRef = Annotated[str, Path(description="versions/: a version or its number; labels/: an alias")]
TF_REF_CHECKS = {"versions": check_version_ref, "labels": check_alias}
TF_VERBS = ("predict", "classify", "regress")
# "/v1/models/digits:" (no verb) is the GET status path of a model named "digits:": 405, Allow: GET.
TF_CALL = {
    **WITH_BODY,
    405: {
        "description": "method_not_allowed: no verb after ':'",
        "content": {"application/json": {"model": ErrorBody}},
    },
}


def _no_route(**details: Any) -> tfserving.RouteNotFound:
    """The 404 for a TF Serving path that matched a route's pattern but names no call."""
    event = app.current_event
    return tfserving.RouteNotFound(f"no route for {event.http_method} {event.path}", **details)


def _segment(value: str) -> str:
    """A GET route's last segment, once its pattern matched: a name, version or alias, or a verb path."""
    if ":" in value or "%3a" in value.lower():
        raise _no_route()
    return value


def _tf_ref(kind: str, ref: str) -> str:
    """The version or alias a TF Serving path pins, checked for its kind."""
    check = TF_REF_CHECKS.get(kind)
    if check is None:
        raise _no_route(expected=[f"/{k}/" for k in TF_REF_CHECKS])
    return check(ref)


def _tf_call(name: str, ref: str | None, verb: str, body: tfserving.TFRequest) -> dict[str, Any]:
    if verb not in TF_VERBS:
        raise _no_route(expected=[f":{v}" for v in TF_VERBS])
    tfserving.check_signature(body.signature_name, verb)
    model = _serve(name, ref)
    if verb == "predict":
        outputs = _infer(model, tfserving.feeds(body, model, MAX_BATCH_SIZE))
        return tfserving.predictions(outputs, columnar=body.inputs is not None)
    tfserving.check_task(model, verb)
    return tfserving.results(model, _infer(model, tfserving.example_feeds(body, model, MAX_BATCH_SIZE)), verb)


def _tf_status(name: str, ref: str | None) -> dict[str, Any]:
    model = models.get(name, ref)  # ready: this container loaded it and can serve it
    registry = models.registry
    if ref is None:
        numbers = [v["number"] for v in registry.numbered_versions(name) if v["number"] is not None]
    else:
        numbers = [n for n in [registry.number_of(model.manifest)] if n is not None]
    return tfserving.model_status(name, numbers, ready=True)


def _tf_metadata(name: str, ref: str | None) -> dict[str, Any]:
    model = models.get(name, ref)
    return tfserving.metadata(model, models.registry.number_of(model.manifest))


@app.get("/v1/models", tags=["tfserving"], responses=LISTING)
def v1_list_models() -> dict[str, Any]:
    """KServe v1: the names of the published models."""
    return {"models": models.registry.list_models()}


@app.get("/v1/models/<name>", tags=["tfserving"], responses=NAMED)
def v1_model_status(name: TFName) -> dict[str, Any]:
    """TF Serving's model status (every numbered version) and KServe v1's readiness, in one body."""
    return _tf_status(_segment(name), None)


@app.get("/v1/models/<name>/<kind>/<ref>", tags=["tfserving"], responses=NAMED)
def v1_model_ref_status(name: Name, kind: TFRefKind, ref: TFRef) -> dict[str, Any]:
    """TF Serving's status of one version: /versions/<number or version> or /labels/<alias>."""
    return _tf_status(name, _tf_ref(kind, _segment(ref)))


@app.get("/v1/models/<name>/metadata", tags=["tfserving"], responses=NAMED)
def v1_model_metadata(name: Name) -> dict[str, Any]:
    """TF Serving's metadata of the production version: its signature_def, from the manifest."""
    return _tf_metadata(name, None)


@app.get("/v1/models/<name>/<kind>/<ref>/metadata", tags=["tfserving"], responses=NAMED)
def v1_model_ref_metadata(name: Name, kind: TFRefKind, ref: TFRef) -> dict[str, Any]:
    """TF Serving's metadata of one version: /versions/<number or version> or /labels/<alias>."""
    return _tf_metadata(name, _tf_ref(kind, ref))


@app.post("/v1/models/<name>:<verb>", tags=["tfserving"], responses=TF_CALL)
def v1_model_call(name: Name, verb: str, body: Annotated[tfserving.TFRequest, Body()]) -> dict[str, Any]:
    return _tf_call(name, None, verb, body)


@app.post("/v1/models/<name>/<kind>/<ref>:<verb>", tags=["tfserving"], responses=TF_CALL)
def v1_model_ref_call(
    name: Name, kind: TFRefKind, ref: TFRef, verb: str, body: Annotated[tfserving.TFRequest, Body()]
) -> dict[str, Any]:
    return _tf_call(name, _tf_ref(kind, ref), verb, body)


# -- batch jobs for large inputs -----------------------------------------------------------
@app.post(
    "/models/<name>/jobs",
    tags=["jobs"],
    status_code=201,
    responses=error_responses(400, 404, 413, 415, 422, 503, success=201),
)
def create_job(name: Name, body: Annotated[JobRequest, Body()]) -> dict[str, Any]:
    ref = _ref(body.alias, body.version) or DEFAULT_ALIAS
    # Loaded as the batch run will load it: an unknown model, alias or version, or a version whose
    # model.onnx no longer matches its sha256, is refused now, not after the upload.
    model = models.get(name, ref)
    return jobs.create_job(s3_client(), models.bucket, name, model.manifest.version, ref, body.format, _caller())


@app.get("/jobs/<job_id>", tags=["jobs"], responses=NAMED)
def job_status(job_id: JobId) -> dict[str, Any]:
    return jobs.job_status(s3_client(), models.bucket, job_id, _caller())


def _caller() -> str | None:
    """The id of the API key API Gateway matched (never the key); None on a route that takes none."""
    return app.current_event.request_context.identity.api_key_id or None


# -- Open Inference Protocol (KServe v2) ----------------------------------------------------
@app.get("/v2", tags=["v2"])
def v2_server() -> dict[str, Any]:
    extensions = ["model_repository_aliases", "binary_tensor_data"]
    return {"name": "maas", "version": SERVICE_VERSION, "extensions": extensions}


@app.get("/v2/health/live", tags=["v2"])
def v2_live() -> dict[str, Any]:
    return {"live": True}


# Registry -> when it was last read: ready is re-checked after READY_TTL_SECONDS, and a new
# registry (a SnapStart restore's fresh client) starts unchecked.
_registry_read_at: weakref.WeakKeyDictionary[Registry, float] = weakref.WeakKeyDictionary()


@app.get("/v2/health/ready", tags=["v2"], responses=error_responses(503))
def v2_ready() -> dict[str, Any]:
    """Ready means the registry can be read (one listing of models/); 503 registry_unavailable when
    not. The protocol reads ready from the status alone: 200 ready, anything else not."""
    registry, now = models.registry, time.monotonic()
    if now - _registry_read_at.get(registry, -math.inf) >= READY_TTL_SECONDS:
        registry.list_models()  # RegistryUnavailable -> 503
        _registry_read_at[registry] = now
    return {"ready": True}


def _v2_metadata(name: str, ref: str | None) -> dict[str, Any]:
    model = models.get(name, ref)
    return kserve.model_metadata(model, models.registry.list_versions(name))


@app.get("/v2/models/<name>", tags=["v2"], responses=NAMED)
def v2_model(name: Name, alias: AliasQuery = None) -> dict[str, Any]:
    return _v2_metadata(name, alias)


@app.get("/v2/models/<name>/versions/<version>", tags=["v2"], responses=NAMED)
def v2_model_version(name: Name, version: Version) -> dict[str, Any]:
    return _v2_metadata(name, check_version_ref(version))


@app.get("/v2/models/<name>/ready", tags=["v2"], responses=NAMED)
def v2_model_ready(name: Name, alias: AliasQuery = None) -> dict[str, Any]:
    model = models.get(name, alias)  # ready means loaded and servable by this container
    return {"name": name, "version": model.version, "ready": True}


@app.get("/v2/models/<name>/versions/<version>/ready", tags=["v2"], responses=NAMED)
def v2_model_version_ready(name: Name, version: Version) -> dict[str, Any]:
    model = models.get(name, check_version_ref(version))
    return {"name": name, "version": model.version, "ready": True}


def _v2_infer(name: str, ref: str | None, body: InferRequest) -> Response:
    """The JSON answer, or the binary extension's when the client asked binary outputs, as a Response whose
    body is already written. Its routes declare no return type (the resolver would validate a binary body
    against it), and a route without one has its dict walked by Powertools' jsonable_encoder before it is
    written: 0.14 ms of a 32-digit request (0.60 -> 0.46 ms in-process, the tests' digits CNN)."""
    model = _serve(name, ref, body.id)
    outputs = _infer(model, kserve.feeds_from_infer(body, model, MAX_BATCH_SIZE, _binary_inputs.get()))
    as_bytes = binary_tensors.delivered_as_bytes(app.current_event.headers)
    tensors, blobs = kserve.infer_outputs(body, model, outputs, binary=as_bytes)
    response: dict[str, Any] = {"model_name": name, "model_version": model.version, "outputs": tensors}
    if body.id is not None:
        response["id"] = body.id
    if blobs:
        return binary_tensors.response(response, blobs)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=dumps(response))


@app.post("/v2/models/<name>/infer", tags=["v2"], responses=WITH_BODY)
def v2_infer(name: Name, body: Annotated[InferRequest, Body()], alias: AliasQuery = None):  # no return type: _v2_infer
    return _v2_infer(name, alias, body)


@app.post("/v2/models/<name>/versions/<version>/infer", tags=["v2"], responses=WITH_BODY)
def v2_infer_version(name: Name, version: Version, body: Annotated[InferRequest, Body()]):
    return _v2_infer(name, check_version_ref(version), body)


@app.get("/openapi.json", include_in_schema=False)
def openapi_document():  # no return annotation: a Response annotation breaks schema generation
    document = app.get_openapi_json_schema(title="MaaS model API", version=SERVICE_VERSION)
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=document)


# Its not-found handler answers every path and method the template sends here with no route of its
# own (/{proxy+} and each path's ANY): 404 route_not_found, or 405 with Allow.
rest_errors.register(app, logger)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        binary = None
        if event.get("resource") in BINARY_RESOURCES:
            binary = binary_tensors.unpack_event(event, MAX_BODY_BYTES)  # the body becomes its JSON header
        parsed = check_body(event, MAX_BODY_BYTES)  # size and encoding before anything parses the body
    except MaasError as error:
        logger.warning("request refused before parsing", extra={"code": error.code, "status": error.status})
        return error_response(error)
    _served.set(None)
    # A base64 body is decoded again by the resolver, to a text of its own: parsed again (rare, and correct).
    _parsed.set((event.get("body"), parsed) if parsed is not None else None)
    _binary_inputs.set(binary)
    try:
        response = app.resolve(event, context)
    finally:
        # Freed with the request, not at the next one: held over, the body's objects would age into the
        # collector's older generations, which it then walks again and again (shared.model_cache, collection).
        _parsed.set(None)
        _binary_inputs.set(None)
    _count_served(response)
    return response


# The end of INIT: where Lambda may freeze or snapshot the environment next, the preload finishes first.
preload.finish_init()
long_lived_made()
