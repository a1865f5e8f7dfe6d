"""templates/serving.yaml and the API events: routes, keys and throttles, CORS, the API and admin
functions' grants and settings, and what `sam local invoke -e` sends."""

from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from template_support import (
    API_EVENTS,
    BUCKET_NAME,
    LOGS_AND_TRACES_SIDS,
    ROOT,
    TEMPLATE,
    api_routes,
    arns,
    as_list,
    deployed,
    environ_reads,
    handler_source,
    iam_routes,
    inline_statements,
    swagger,
)

from maas import template_check
from maas.local_api import binary_media_types, choose_route, is_binary, missing_route_response
from maas.template import Template, load_yaml
from maas_core.shared.rest_errors import ADMIN_ROUTES

# What the API handler serves; the events and the README's curl lines use these.
REQUIRED_ROUTES = {
    ("GET", "/health"),
    ("GET", "/models"),
    ("GET", "/models/{name}"),
    ("POST", "/models/{name}/predict"),
    ("GET", "/models/{name}/versions/{version}"),
    ("POST", "/models/{name}/versions/{version}/predict"),
    # Batch jobs for large inputs
    ("POST", "/models/{name}/jobs"),
    ("GET", "/jobs/{job_id}"),
    # Open Inference Protocol (KServe v2)
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{name}"),
    ("GET", "/v2/models/{name}/versions/{version}"),
    ("GET", "/v2/models/{name}/ready"),
    ("GET", "/v2/models/{name}/versions/{version}/ready"),
    ("POST", "/v2/models/{name}/infer"),
    ("POST", "/v2/models/{name}/versions/{version}/infer"),
    # The API's own description
    ("GET", "/openapi.json"),
    ("GET", "/swagger"),
}
# Health probes and docs carry no API key; every other route, present or future, needs one.
OPEN_ROUTES = {
    ("GET", "/health"),
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/swagger"),
}
API_KEY_SECURITY = [{"api_key": []}]
# How SAM writes an event's Method in the OpenAPI body it generates.
SWAGGER_METHOD = {"ANY": "x-amazon-apigateway-any-method"}
# ApiFunction's routes with a handler; its other events are ANY (every other method of those paths,
# and /{proxy+}), which it answers 405 or 404 (tests/unit/test_unknown_routes.py).
ROUTED = REQUIRED_ROUTES
# The routes that write with the API key alone: inference and batch job creation.
DATA_WRITES = {route for route in REQUIRED_ROUTES if route[0] == "POST"}


def test_api_stage_writes_access_logs_without_the_key(translated: dict[str, Any]) -> None:
    resources = translated["Resources"]
    (stage,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    setting = stage["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    fields = json.loads(setting["Format"])  # one JSON object per request
    assert {"requestId", "ip", "caller", "apiKeyId", "httpMethod", "resourcePath", "status"} <= set(fields)
    # The key's id says whose request it was; the key itself never reaches a log.
    assert "$context.identity.apiKey" not in fields.values()
    assert resources["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] > 0
    # Access logging needs the region's API Gateway CloudWatch role set before the stage is made.
    assert resources["Api"]["DependsOn"] in ("ApiGatewayAccount", ["ApiGatewayAccount"])
    account = resources["ApiGatewayAccount"]
    assert account["Properties"]["CloudWatchRoleArn"] == {
        "Fn::If": [
            "CreateApiGatewayCloudWatchRole",
            {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]},
            {"Ref": "ApiGatewayCloudWatchRoleArn"},
        ]
    }
    role = resources["ApiGatewayCloudWatchRole"]
    assert role["Condition"] == "CreateApiGatewayCloudWatchRole"
    # Other APIs of the region may log through it: the role and the setting outlive the stack.
    assert role["DeletionPolicy"] == account["DeletionPolicy"] == "Retain"
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    for statement in inline_statements(translated, "ApiGatewayCloudWatchRole"):
        assert all(action.startswith("logs:") for action in as_list(statement["Action"]))
        assert arns(statement) == ["arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"]


def test_api_function_reads_models_and_writes_only_job_objects(translated: dict[str, Any]) -> None:
    role = translated["Resources"]["ApiFunctionRole"]["Properties"]
    statements = [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]
    assert statements, "ApiFunction has no inline policy: it could not read the registry"
    # Its logs and traces: checked with BatchFunction's in test_functions_log_only_to_their_own_log_group.
    statements = [s for s in statements if s.get("Sid") not in LOGS_AND_TRACES_SIDS]
    actions: set[str] = set()
    for statement in statements:
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        actions.update([action] if isinstance(action, str) else action)
        for resource in resources:
            arn = resource["Fn::Sub"] if isinstance(resource, dict) else resource
            assert arn != "*" and ":::*" not in arn, f"unbounded resource {arn!r}"
            assert arn.startswith(f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}"), f"not the model bucket: {arn!r}"
        suffixes = {r["Fn::Sub"].removeprefix(f"arn:${{AWS::Partition}}:s3:::{BUCKET_NAME}") for r in resources}
        if action == "s3:GetObject":
            assert suffixes <= {"/models/*", "/batch/jobs/*", "/batch/in/*", "/batch/out/*"}
        if action == "s3:PutObject":  # never models/: the API cannot publish or change a model
            assert suffixes <= {"/batch/jobs/*", "/batch/in/*"}
        if action == "s3:ListBucket":
            assert statement["Condition"] == {"StringLike": {"s3:prefix": "models/*"}}
    assert actions == {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    # Its own role: SAM's generated one would add managed policies granting logs and X-Ray on "*".
    assert translated["Resources"]["ApiFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["ApiFunctionRole", "Arn"]}
    assert role.get("ManagedPolicyArns", []) == []


def test_api_function_reaches_the_bucket_by_name_not_by_ref(template: dict[str, Any]) -> None:
    # A Ref/GetAtt to the bucket from the function becomes a cycle once the bucket notifies a function.
    function = json.dumps(template["Resources"]["ApiFunction"])
    assert '"Ref": "ModelBucket"' not in function and "ModelBucket.Arn" not in function
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["MODEL_BUCKET"] == {"Fn::Sub": BUCKET_NAME}


def test_every_route_the_handler_serves_is_in_the_template(template: dict[str, Any]) -> None:
    routes = api_routes(template)
    assert routes >= REQUIRED_ROUTES
    handler_routes: set[tuple[str, str]] = set()
    for node in ast.walk(handler_source()):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            owner, method, path = node.func.value, node.func.attr, node.args[0]
            is_app = isinstance(owner, ast.Name) and owner.id == "app"
            is_route = method in {"get", "post", "put", "delete", "patch"}
            if is_app and is_route and isinstance(path, ast.Constant) and isinstance(path.value, str):
                handler_routes.add((method.upper(), re.sub(r"<(\w+)>", r"{\1}", path.value)))
    assert handler_routes, "found no @app.<method>(path) route in the handler"
    # TF Serving's and KServe v1's /v1/models routes reach the handler through the catch-all (API Gateway
    # cannot declare TF Serving's ":predict" paths); every other route is declared, so a route added to
    # the handler and forgotten in the template is caught here, not answered 404 route_not_found.
    assert ("ANY", "/{proxy+}") in routes
    through_catch_all = {r for r in handler_routes if r[1] == "/v1/models" or r[1].startswith("/v1/models/")}
    assert through_catch_all, "the TF Serving routes are served through the catch-all"
    missing = handler_routes - through_catch_all - routes
    assert not missing, f"routes the API Gateway would not forward: {missing}"


def test_every_route_but_health_and_docs_needs_an_api_key(template: dict[str, Any], translated: dict[str, Any]) -> None:
    routes = api_routes(template)
    assert routes >= OPEN_ROUTES
    opted_out = {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in resource["Properties"].get("Events", {}).values()
        if event["Type"] == "Api" and event["Properties"].get("Auth", {}).get("ApiKeyRequired") is False
    }
    iam = iam_routes(template)
    assert opted_out - iam == OPEN_ROUTES, "only health, docs and IAM-signed routes may opt out of the API key"

    body = swagger(translated)
    assert body["securityDefinitions"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert body.get("x-amazon-apigateway-api-key-source", "HEADER") == "HEADER"
    assert "security" not in body, "a document-wide requirement would reach the open routes too"
    for method, path in routes:
        security = body["paths"][path][SWAGGER_METHOD.get(method, method.lower())].get("security", [])
        if (method, path) in OPEN_ROUTES:
            assert security == [], f"{method} {path} should be open"
        elif (method, path) in iam:  # admin routes: SigV4-signed, with or without the key too
            assert {"AWS_IAM": []} in security, f"{method} {path}: {security}"
        else:
            assert security == API_KEY_SECURITY, f"{method} {path} does not require the API key"
    # Browsers send CORS preflights without the key: an OPTIONS method that required one would fail them.
    for path, methods in body["paths"].items():
        if "options" in methods:
            assert methods["options"].get("security", []) == [], f"OPTIONS {path} requires the API key"


def test_admin_routes_need_iam_auth(template: dict[str, Any], translated: dict[str, Any]) -> None:
    # Reads, inference and job creation take the API key. A route that changes anything else (promote,
    # rollback, publish: the admin routes) must be signed with IAM credentials, which a leaked API key
    # is not.
    routes = api_routes(template) - api_routes(template, "ApiFunction") | ROUTED
    admin = {(m, p) for m, p in routes if m != "GET" and (m, p) not in DATA_WRITES}
    # Every route of the function that may write the registry, reads of aliases and history included.
    admin |= api_routes(template, "AdminFunction")
    iam = iam_routes(template)
    assert admin <= iam, f"admin routes without Auth: {{Authorizer: AWS_IAM}}: {sorted(admin - iam)}"
    body = swagger(translated)
    for method, path in iam:
        assert {"AWS_IAM": []} in body["paths"][path][method.lower()]["security"], (method, path)
        assert body["securityDefinitions"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    # IAM per admin route, never API-wide: a DefaultAuthorizer would lock the API-key clients out.
    assert "DefaultAuthorizer" not in template["Resources"]["Api"]["Properties"]["Auth"]


def test_usage_plan_caps_and_throttles_the_api_key_on_the_stage(translated: dict[str, Any]) -> None:
    resources = translated["Resources"]

    def of_type(kind: str) -> list[str]:
        return [logical_id for logical_id, r in resources.items() if r["Type"] == kind]

    (stage,) = of_type("AWS::ApiGateway::Stage")
    assert resources[stage]["Properties"]["RestApiId"] == {"Ref": "Api"}
    (plan_id,) = of_type("AWS::ApiGateway::UsagePlan")
    plan = resources[plan_id]["Properties"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "Api"}, "Stage": {"Ref": stage}}]
    # Refs, not values: the deployer's parameters must reach the plan (SAM's own UsagePlan bakes in defaults).
    assert plan["Quota"] == {"Limit": {"Ref": "ApiQuotaPerDay"}, "Period": "DAY"}
    assert plan["Throttle"] == {"BurstLimit": {"Ref": "ApiBurstLimit"}, "RateLimit": {"Ref": "ApiRateLimit"}}

    (key_id,) = of_type("AWS::ApiGateway::ApiKey")
    assert resources[key_id]["Properties"]["Enabled"] is True
    assert "Value" not in resources[key_id]["Properties"], "a key value in the template is a secret in git"
    (link,) = of_type("AWS::ApiGateway::UsagePlanKey")
    assert resources[link]["Properties"] == {
        "KeyId": {"Ref": key_id},
        "KeyType": "API_KEY",
        "UsagePlanId": {"Ref": plan_id},
    }

    output = translated["Outputs"]["ApiKeyId"]
    assert output["Value"] == {"Ref": key_id}
    assert "get-api-key" in output["Description"] and "--include-value" in output["Description"]

    # A key allowed more than the whole stage would be capped by the stage anyway.
    parameters = translated["Parameters"]
    (stage_throttle,) = [s for s in resources[stage]["Properties"]["MethodSettings"] if s["ResourcePath"] == "/*"]
    assert parameters["ApiRateLimit"]["Default"] <= stage_throttle["ThrottlingRateLimit"]
    assert parameters["ApiBurstLimit"]["Default"] <= stage_throttle["ThrottlingBurstLimit"]
    assert parameters["ApiRateLimit"]["Default"] <= parameters["ApiBurstLimit"]["Default"]


def test_the_open_routes_are_throttled_apart_so_they_cannot_starve_the_keyed_ones(translated: dict[str, Any]) -> None:
    """Health and docs need no key, so no usage plan holds them: each has its own low stage throttle."""
    (stage,) = [r["Properties"] for r in translated["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    settings = {
        # MethodSettings write each "/" of a resource path as "~1" after the leading one.
        (
            s["HttpMethod"],
            s["ResourcePath"] if s["ResourcePath"] == "/*" else s["ResourcePath"][1:].replace("~1", "/"),
        ): s
        for s in stage["MethodSettings"]
    }
    every_method = settings.pop(("*", "/*"))
    # Exactly the open routes, each under the API's real resource path (a typo would throttle nothing).
    assert set(settings) == OPEN_ROUTES
    served = {(method.upper(), path) for path, item in swagger(translated)["paths"].items() for method in item}
    assert served >= OPEN_ROUTES
    for route, setting in settings.items():
        assert setting["ThrottlingRateLimit"] <= 5 and setting["ThrottlingBurstLimit"] <= 10, route
        assert setting["MetricsEnabled"] is True
    # All of them at once stay well under what the keyed routes may use.
    open_rate = sum(s["ThrottlingRateLimit"] for s in settings.values())
    assert open_rate <= every_method["ThrottlingRateLimit"]


@pytest.mark.parametrize("origin", ["", "https://app.example.com"], ids=["off", "on"])
def test_cors_headers_follow_the_allow_origin_parameter(template: dict[str, Any], origin: str) -> None:
    stack = deployed(
        template_check.translate(template, parameters={"CorsAllowOrigin": origin}), {"CorsAllowOrigin": origin}
    )
    body = swagger(stack)
    preflights = {path: methods["options"] for path, methods in body["paths"].items() if "options" in methods}
    assert set(preflights) == set(body["paths"]), "a path without a preflight cannot be called from a browser"
    answers = [
        op["x-amazon-apigateway-integration"]["responses"]["default"]["responseParameters"]
        for op in preflights.values()
    ]
    refusals = [r.get("responseParameters", {}) for r in body.get("x-amazon-apigateway-gateway-responses", {}).values()]
    assert refusals, "API Gateway's own 4xx/5xx (missing key, throttled) need the CORS header too"
    origins = [a.get("method.response.header.Access-Control-Allow-Origin") for a in answers]
    origins += [r.get("gatewayresponse.header.Access-Control-Allow-Origin") for r in refusals]
    function_env = stack["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert function_env["CORS_ALLOW_ORIGIN"] == origin
    if origin:
        assert set(origins) == {f"'{origin}'"}
        for answer in answers:
            allowed = answer["method.response.header.Access-Control-Allow-Headers"].strip("'").lower().split(",")
            assert {"content-type", "x-api-key"} <= set(allowed)
    else:
        assert set(origins) == {None}, "CORS is off by default: no Access-Control-Allow-Origin anywhere"


def test_cors_origin_parameter_refuses_values_that_would_break_the_header(template: dict[str, Any]) -> None:
    spec = template["Parameters"]["CorsAllowOrigin"]
    assert spec["Default"] == ""
    pattern = re.compile(spec["AllowedPattern"])
    for good in ("", "*", "https://app.example.com", "http://localhost:3000"):
        assert pattern.fullmatch(good), good
    # A quote would end the mapping's literal early; a list is not one origin.
    for bad in ("app.example.com", "https://a.example.com'", "https://a.example.com,https://b.example.com", " "):
        assert not pattern.fullmatch(bad), bad


def test_every_setting_the_handler_reads_is_configured(template: dict[str, Any]) -> None:
    configured = set(template["Globals"]["Function"]["Environment"]["Variables"])
    configured |= set(template["Resources"]["ApiFunction"]["Properties"].get("Environment", {}).get("Variables", {}))
    read = environ_reads(handler_source())
    assert read <= configured, f"os.environ[...] with no value in the template: {read - configured}"


def test_globals_match_the_runtime_the_package_is_built_for(template: dict[str, Any]) -> None:
    function = template["Globals"]["Function"]
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == [{"Ref": "Architecture"}]
    assert function["Tracing"] == "Active"
    assert function["Timeout"] <= 29, "API Gateway cuts a REST integration off at 29 s"
    assert template["Parameters"]["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]


def test_traces_never_carry_what_a_function_returns(template: dict[str, Any]) -> None:
    # Powertools' Tracer puts a traced function's return value into X-Ray by default: a client's predictions.
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"


def test_outputs_name_the_api_url_bucket_and_function(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["ApiUrl"]["Value"]["Fn::Sub"].startswith("https://${Api}.execute-api.")
    assert outputs["ApiUrl"]["Value"]["Fn::Sub"].endswith("/${StageName}/")
    assert {"ModelBucketName", "ApiFunctionArn"} <= set(outputs)


def test_there_is_an_event_for_every_route(template: dict[str, Any]) -> None:
    covered = {(e["httpMethod"], e["resource"]) for e in (json.loads(p.read_text()) for p in API_EVENTS)}
    assert covered >= {route for route in api_routes(template) if route[0] != "ANY"}  # ANY: no handler of its own


@pytest.mark.parametrize("path", API_EVENTS, ids=lambda p: p.name)
def test_event_matches_a_route_of_the_template(path: Path, template: dict[str, Any]) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    method, resource = event["httpMethod"], event["resource"]
    assert (method, resource) in api_routes(template), f"{method} {resource} is not a route of template.yaml"
    context = event["requestContext"]
    assert (context["httpMethod"], context["resourcePath"]) == (method, resource)
    assert context["stage"] == template["Parameters"]["StageName"]["Default"]
    assert context["path"] == f"/{context['stage']}{event['path']}"
    assert context["requestId"]
    # The concrete path fills the resource's {placeholders} with exactly the pathParameters.
    pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(resource)) + "$"
    match = re.match(pattern, event["path"])
    assert match, f"{event['path']} does not fit {resource}"
    assert (event["pathParameters"] or {}) == match.groupdict()
    for key in ("multiValueHeaders", "multiValueQueryStringParameters", "queryStringParameters"):
        assert key in event
    if method == "POST":
        assert {k.lower(): v for k, v in event["headers"].items()}["content-type"] == "application/json"
        body = base64.b64decode(event["body"]).decode() if event["isBase64Encoded"] else event["body"]
        # TensorFlow Serving's row ("instances") or columnar ("inputs") form, Open Inference's "inputs",
        # a batch job request or a rollback.
        assert {"instances", "inputs"} & set(json.loads(body)) or resource.endswith(("/jobs", "/rollback"))


def test_the_local_api_sends_every_event_to_its_own_route() -> None:
    # maas.local_api chooses as API Gateway does: a declared path before /{proxy+}, a method before ANY.
    template = Template(TEMPLATE)
    routes = [(route, fn) for fn in template.function_ids() for route in template.function(fn).routes]
    for path in API_EVENTS:
        event = json.loads(path.read_text(encoding="utf-8"))
        chosen = choose_route(routes, event["httpMethod"], event["path"])
        assert chosen is not None and chosen[0].path == event["resource"], f"{path.name} reaches {chosen}"
        assert chosen[0].method == event["httpMethod"]


V = "/models/digits/versions/20260101T000000Z-00000000"


@pytest.mark.parametrize(
    ("method", "path", "resource", "function"),
    [
        ("POST", "/health", "/health", "ApiFunction"),  # another method of a served path: its ANY (405)
        ("GET", "/no/such/route", "/{proxy+}", "ApiFunction"),  # any other path: the catch-all (404)
        ("GET", "/", "/", "ApiFunction"),
        (
            "DELETE",
            "/models/digits/versions/20260101T000000Z-00000000",
            "/models/{name}/versions/{version}",
            "AdminFunction",
        ),
        (
            "PUT",
            "/models/digits/versions/20260101T000000Z-00000000",
            "/models/{name}/versions/{version}",
            "ApiFunction",
        ),
        # AdminFunction's paths: its IAM-signed methods reach it, every other method ApiFunction's ANY.
        ("PUT", "/models/digits/aliases/production", "/models/{name}/aliases/{alias}", "AdminFunction"),
        ("POST", "/models/digits/aliases/production", "/models/{name}/aliases/{alias}", "ApiFunction"),
        ("GET", "/models/digits/aliases/production/rollback", "/models/{name}/aliases/{alias}/rollback", "ApiFunction"),
        (
            "DELETE",
            "/models/digits/aliases/production/history",
            "/models/{name}/aliases/{alias}/history",
            "ApiFunction",
        ),
    ],
)
def test_every_unknown_route_reaches_the_api_function_with_its_key(
    template: dict[str, Any], method: str, path: str, resource: str, function: str
) -> None:
    loaded = Template(TEMPLATE)
    routes = [(route, fn) for fn in loaded.function_ids() for route in loaded.function(fn).routes]
    chosen = choose_route(routes, method, path)
    assert chosen is not None and (chosen[0].path, chosen[1]) == (resource, function)
    events = template["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    (catch_all,) = [e for e in events if e["Properties"]["Path"] == "/{proxy+}"]
    assert catch_all["Properties"]["Method"] == "any" and "Auth" not in catch_all["Properties"]  # the API key
    # Every path the API serves (AdminFunction's too) takes every other method: API Gateway never falls
    # back from a declared path to /{proxy+}, it would answer 403 "Missing Authentication Token".
    served = {p for m, p in api_routes(template) if m != "ANY"}
    assert served <= {p for m, p in api_routes(template, "ApiFunction") if m == "ANY"}
    # Each ANY needs the key and reaches only ApiFunction: auth is never weakened to an admin route's.
    assert not {r for r in api_routes(template) - api_routes(template, "ApiFunction") if r[0] == "ANY"}
    anys = [e["Properties"] for e in events if e["Properties"]["Method"] == "any"]
    assert anys and all("Auth" not in e for e in anys)


@pytest.mark.parametrize(
    "path", ["/v2/models", "/v2/health", "/jobs", "/models/digits/aliases", "/models/digits/versions"]
)
def test_a_parent_resource_no_route_names_gets_the_json_404_gateway_response(path: str) -> None:
    # Each is a resource only as the parent of declared paths: it has no method, and API Gateway
    # does not fall back from it to /{proxy+}. Its MISSING_AUTHENTICATION_TOKEN response is the answer.
    loaded = Template(TEMPLATE)
    routes = [(route, fn) for fn in loaded.function_ids() for route in loaded.function(fn).routes]
    assert choose_route(routes, "GET", path) is None
    assert choose_route(routes, "GET", path + "x")[0].path == "/{proxy+}"  # a sibling nobody declared
    status, body = missing_route_response(loaded)
    assert (status, body["code"]) == (404, "route_not_found") and "IAM" in body["error"]


def test_the_missing_route_gateway_response_is_json_with_cors_as_the_others(template: dict[str, Any]) -> None:
    responses = template["Resources"]["Api"]["Properties"]["GatewayResponses"]
    missing = responses["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["StatusCode"] == "404"
    assert json.loads(missing["ResponseTemplates"]["application/json"])["code"] == "route_not_found"
    assert missing["ResponseParameters"] == responses["DEFAULT_4XX"]["ResponseParameters"]


def test_the_admin_routes_table_is_the_admin_function_s_events(template: dict[str, Any]) -> None:
    # ApiFunction's 405 lists ADMIN_ROUTES in Allow: the table must say what API Gateway sends AdminFunction.
    table = {(m, re.sub(r"<(\w+)>", r"{\1}", p)) for p, methods in ADMIN_ROUTES.items() for m in methods}
    assert api_routes(template, "AdminFunction") == table


def test_max_body_bytes_is_one_parameter_every_serving_function_sees(template: dict[str, Any]) -> None:
    serving = load_yaml(ROOT / "templates" / "serving.yaml")
    spec = serving["Parameters"]["MaxBodyBytes"]
    # API Gateway hands the bodies base64 (4/3 larger) and the event must fit Lambda's 6 MB payload.
    assert spec["Default"] == spec["MaxValue"] == 4_500_000 and spec["MaxValue"] * 4 / 3 <= 6_000_000
    loaded = Template(TEMPLATE)
    for function in ("ApiFunction", "AdminFunction"):
        variables = serving["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["MAX_BODY_BYTES"] == {"Ref": "MaxBodyBytes"}, function
        assert loaded.function(function).environment["MAX_BODY_BYTES"] == "4500000", function
    # Every function that reads it takes it from there (the Globals' copy is read by none).
    readers = {
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        and "MAX_BODY_BYTES" in environ_reads(handler_source(_handler_path(resource)))
    }
    assert readers == {"ApiFunction", "AdminFunction"}


def _handler_path(function: dict[str, Any]) -> Path:
    """The source file of a function's Handler (maas_core.x.y.lambda_handler -> src/x/y.py)."""
    module = function["Properties"]["Handler"].rsplit(".", 1)[0].removeprefix("maas_core.")
    return ROOT / "src" / (module.replace(".", "/") + ".py")


def test_binary_media_types_cover_the_stock_clients_and_match_the_handler(template: dict[str, Any]) -> None:
    from maas_core.shared.binary_tensors import BINARY_MEDIA_TYPES

    listed = [t.replace("~1", "/") for t in template["Resources"]["Api"]["Properties"]["BinaryMediaTypes"]]
    assert listed == list(BINARY_MEDIA_TYPES) == binary_media_types(Template(TEMPLATE))
    assert is_binary("application/octet-stream", listed)  # the kserve SDK's binary requests
    assert is_binary(None, listed)  # tritonclient.http: no Content-Type, no Accept
    assert not is_binary("text/plain", listed) and not is_binary("*/*", listed)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/health\n"), ("POST", "/models/digits/predict\n"), ("GET", "/v2\n"), ("GET", "/openapi.json\n")],
)
def test_a_route_matches_the_whole_path_not_one_with_a_trailing_newline(method: str, path: str) -> None:
    # API Gateway matches the whole path; a regex ending in "$" would also take "/health\n".
    template = Template(TEMPLATE)
    routes = [route for fn in template.function_ids() for route in template.function(fn).routes]
    assert [r.path for r in routes if r.match(method, path.rstrip("\n")) is not None]
    assert [r.path for r in routes if r.match(method, path) is not None] == []


def test_a_newline_in_a_path_parameter_reaches_the_handler_to_refuse() -> None:
    # As on API Gateway, {name} is any one segment: the handler sees the newline and refuses the name.
    routes = Template(TEMPLATE).function("ApiFunction").routes
    (route,) = [r for r in routes if (r.method, r.path) == ("GET", "/models/{name}")]
    assert route.match("GET", "/models/digits\n") == {"name": "digits\n"}


def _body(name: str) -> dict[str, Any]:
    event = json.loads((ROOT / "events" / name).read_text(encoding="utf-8"))
    raw = base64.b64decode(event["body"]).decode() if event["isBase64Encoded"] else event["body"]
    return json.loads(raw)


def test_predict_events_carry_a_real_digit_in_the_shape_the_model_takes() -> None:
    (image,) = _body("predict_digits.json")["instances"]
    assert len(image) == 8 and all(len(row) == 8 and all(len(px) == 1 for px in row) for row in image)
    pixels = [px[0] for row in image for px in row]
    assert all(isinstance(v, float) and 0.0 <= v <= 16.0 for v in pixels)
    assert len(set(pixels)) > 2, "not an image"
    assert _body("predict_digits_base64.json") == _body("predict_digits.json")
    assert _body("predict_unknown_model.json") == _body("predict_digits.json")
    (wrong,) = _body("predict_wrong_shape.json")["instances"]
    assert [[px[0] for px in row] for row in image] == wrong, "the wrong-shape event should differ only in shape"


def test_version_and_open_inference_events_carry_the_same_digit() -> None:
    (image,) = _body("predict_digits.json")["instances"]
    assert _body("predict_digits_version.json") == _body("predict_digits.json")
    assert _body("predict_digits_columnar.json") == {"inputs": {"image": [image]}}
    (tensor,) = _body("v2_infer_digits.json")["inputs"]
    assert tensor == {
        "name": "image",
        "shape": [1, 8, 8, 1],
        "datatype": "FP32",
        "data": [px[0] for row in image for px in row],  # Open Inference sends tensors flat, row-major
    }
    assert _body("v2_infer_digits_version.json") == _body("v2_infer_digits.json")
    # The version events name a well-formed version that the registry does not hold.
    for name in ("predict_digits_version.json", "describe_model_version.json", "v2_infer_digits_version.json"):
        version = json.loads((ROOT / "events" / name).read_text(encoding="utf-8"))["pathParameters"]["version"]
        assert re.fullmatch(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}", version), version


def test_every_admin_route_is_iam_signed_and_served_by_the_admin_function(template: dict[str, Any]) -> None:
    admin = api_routes(template, "AdminFunction")
    assert admin == {
        ("GET", "/models/{name}/aliases/{alias}"),
        ("PUT", "/models/{name}/aliases/{alias}"),
        ("POST", "/models/{name}/aliases/{alias}/rollback"),
        ("GET", "/models/{name}/aliases/{alias}/history"),
        ("DELETE", "/models/{name}/versions/{version}"),
    }
    assert admin <= iam_routes(template)


@pytest.mark.parametrize("snapstart", ["None", "PublishedVersions"])
def test_snapstart_is_a_parameter_of_the_api_function(template: dict[str, Any], snapstart: str) -> None:
    stack = deployed(template_check.translate(template, root=ROOT), {"SnapStart": snapstart, "PreloadModels": "digits"})
    function = stack["Resources"]["ApiFunction"]["Properties"]
    assert function["SnapStart"] == {"ApplyOn": snapstart}
    assert function["Runtime"] >= "python3.12"  # SnapStart for Python starts at 3.12
    assert function["Environment"]["Variables"]["PRELOAD_MODELS"] == "digits"
    # API Gateway invokes the published alias, where SnapStart applies.
    assert any(
        r["Type"] == "AWS::Lambda::Alias" and r["Properties"]["Name"] == "live" for r in stack["Resources"].values()
    )


@pytest.mark.parametrize("function", ["ApiFunction", "AdminFunction"])
def test_serving_functions_take_their_memory_and_ephemeral_storage_from_parameters(
    template: dict[str, Any], function: str
) -> None:
    properties = template["Resources"][function]["Properties"]
    assert properties["MemorySize"] == {"Ref": "MemorySize"}
    assert properties["EphemeralStorage"] == {"Size": {"Ref": "EphemeralStorage"}}
    # The handler sizes its /tmp model cache to the same value (src/shared/model_files.py).
    assert properties["Environment"]["Variables"]["EPHEMERAL_STORAGE_MB"] == {"Ref": "EphemeralStorage"}
    storage = template["Parameters"]["EphemeralStorage"]
    assert (storage["Type"], storage["Default"], storage["MinValue"], storage["MaxValue"]) == (
        "Number",
        512,
        512,
        10240,
    )


def test_maas_models_publish_reads_the_smallest_function_limits_from_the_template() -> None:
    import argparse

    from maas.models_cli import serving_limits

    assert serving_limits(argparse.Namespace()).to_json() == {"memory_mb": 1024, "storage_mb": 512}


def test_the_api_function_s_invoke_permissions_fit_lambda_s_policy_limit(
    template: dict[str, Any], translated: dict[str, Any]
) -> None:
    # SAM adds one statement per Api event (an AWS::Lambda::Permission) to the resource policy of the
    # "live" alias, and Lambda refuses a deploy whose policy is over 20,480 bytes. Sized as AWS stores
    # a statement, with long names: a 64-character function, a nested stack named from a 20-character root.
    stack = "maas-prod-api-stack-Serving-ABCDEFGHIJKL"  # pragma: allowlist secret (a stack name)
    region, function = "ap-southeast-2", "f" * 64
    statements = []
    for logical_id, resource in translated["Resources"].items():
        properties = resource["Properties"]
        if resource["Type"] != "AWS::Lambda::Permission" or "ApiFunction" not in json.dumps(properties["FunctionName"]):
            continue
        source = properties["SourceArn"]["Fn::Sub"][0]
        for name, value in (("AWS::Region", region), ("AWS::AccountId", "123456789012"), ("__ApiId__", "a" * 10)):
            source = source.replace("${" + name + "}", value)
        arn = f"arn:aws:lambda:{region}:123456789012:function:{function}:live"
        statements.append(
            {
                "Sid": f"{stack}-{logical_id}-ABCDEFGHIJKL",
                "Effect": "Allow",
                "Principal": {"Service": "apigateway.amazonaws.com"},
                "Action": "lambda:InvokeFunction",
                "Resource": arn,
                "Condition": {"ArnLike": {"AWS:SourceArn": source.replace("${__Stage__}", "*")}},
            }
        )
    assert len(statements) == len(api_routes(template, "ApiFunction"))
    policy = {"Version": "2012-10-17", "Id": "default", "Statement": statements}
    size = len(json.dumps(policy, separators=(",", ":")))
    # Fewer Api events on ApiFunction (or a smaller definition of its catch-alls) before this can pass.
    assert size <= 20_480, f"ApiFunction's resource policy would be {size} bytes, over Lambda's 20,480"
