"""ApiFunction on the events in events/ (the files `sam local invoke -e` takes), S3 from moto."""

import base64
import gc
import json
import logging
import os

import pytest

from tests_support import Context, event


def test_health(handler):
    status, body = handler(event("health"))
    assert status == 200 and body["status"] == "ok"


def test_list_and_describe(handler, published):
    status, body = handler(event("list_models"))
    assert status == 200
    assert body["models"] == [{"name": "digits", "aliases": {"production": published.version}}]
    status, body = handler(event("describe_model"))
    assert status == 200
    assert body["version"] == published.version
    assert body["manifest"]["inputs"][0]["shape"] == [None, 8, 8, 1]


@pytest.mark.parametrize("name", ["predict_digits", "predict_digits_base64"])
def test_predict_a_real_digit(handler, published, name):
    status, body = handler(event(name))
    assert status == 200
    assert body["model"] == "digits" and body["version"] == published.version
    assert body["predictions"][0]["label"] == "0"  # load_digits sample 0 is a zero
    assert len(body["predictions"][0]["probabilities"]) == 10


def test_wrong_shape_is_a_400_naming_both_shapes(handler, published):
    status, body = handler(event("predict_wrong_shape"))
    assert status == 400
    assert body["code"] == "invalid_input"
    assert body["details"]["expected"] == "[None, 8, 8, 1]"
    assert body["details"]["received"] == [1, 8, 8]


def test_unknown_model_is_a_404(handler, published):
    status, body = handler(event("predict_unknown_model"))
    assert status == 404 and body["code"] == "model_not_found"


@pytest.mark.parametrize("raw", ["{not json", "", "[1, 2"])
def test_malformed_json_is_a_400_and_the_next_request_still_works(handler, published, raw):
    status, body = handler(event("predict_digits", body=raw))
    assert status == 400 and body["code"] == "bad_request"
    assert handler(event("predict_digits"))[0] == 200


def test_truncated_base64_is_a_400(handler, published):
    good = event("predict_digits_base64")["body"]
    status, _ = handler(event("predict_digits_base64", body=good[: len(good) // 2 - 1]))
    assert status == 400


def test_path_traversal_in_the_name_is_refused(handler):
    evt = event("predict_unknown_model", path="/models/..%2Fsecrets/predict", pathParameters={"name": "..%2Fsecrets"})
    status, body = handler(evt)
    assert status == 400 and body["code"] == "invalid_name"


def test_s3_failure_is_a_503_with_a_stable_code_not_a_trace(handler, s3):
    s3.delete_bucket(Bucket=os.environ["MODEL_BUCKET"])
    status, body = handler(event("predict_digits"))
    assert status == 503 and body["code"] == "registry_unavailable"
    assert "Traceback" not in json.dumps(body)


def test_pinned_version_by_query(handler, published):
    status, body = handler(event("predict_digits", queryStringParameters={"version": published.version}))
    assert status == 200 and body["version"] == published.version
    bad = base64.b64encode(b"x").decode()
    assert handler(event("predict_digits", queryStringParameters={"version": bad}))[0] in (400, 404)


def test_metrics_per_model_and_version_in_emf_and_no_body_in_logs(handler, published, capsys):
    handler(event("predict_digits"))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emf = [line for line in lines if "_aws" in line]
    names = {m["Name"] for line in emf for d in line["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"ModelLoadMs", "InferenceMs"} <= names
    assert all(
        line["model"] == "digits" and line["version"] == published.version for line in emf if "InferenceMs" in line
    )
    assert not any("instances" in json.dumps(line) for line in lines)  # the request body never reaches the logs


def test_requests_over_the_body_limit_are_refused_before_parsing(handler, published):
    status, body = handler(event("predict_digits", body="[" * 6_000_000))
    assert status == 413 and body["code"] == "payload_too_large"


def test_docs_routes_serve_a_valid_openapi_document_with_model_examples(handler, published):
    from openapi_spec_validator import validate

    from maas_core.functions.api import app

    document = json.loads(app.lambda_handler(event("openapi_spec"), Context())["body"])
    validate(document)
    media = document["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]
    assert media["examples"]["digits"]["value"]["inputs"][0]["shape"] == [1, 8, 8, 1]


def raw_response(evt):
    from maas_core.functions.api import app

    return app.lambda_handler(evt, Context())


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (path, {"version": bad})
        for path in ("predict_digits", "describe_model")
        for bad in ("{v}\n", "garbage", "production", "{v}\r\nX-Injected: 1")
    ]
    + [("predict_digits", {"alias": "production\n"}), ("v2_model_ready", {"alias": "production\n"})],
)
def test_a_version_query_that_is_not_a_version_is_a_400_never_a_header(api, published, path, query):
    evt = event(path, queryStringParameters={k: v.format(v=published.version) for k, v in query.items()})
    status, body, _ = api(evt)
    assert (status, body["code"]) == (400, "invalid_name"), body
    response = raw_response(evt)
    values = [*(response.get("headers") or {}).values()]
    values += [v for vs in (response.get("multiValueHeaders") or {}).values() for v in vs]
    assert not any("\n" in str(v) or "\r" in str(v) for v in values)
    assert "X-Model-Version" not in (response.get("multiValueHeaders") or {})


def test_the_version_header_is_the_registrys_for_alias_and_pinned_requests(api, published):
    for query in (None, {"version": published.version}):
        status, body, headers = api(event("predict_digits", queryStringParameters=query))
        assert status == 200 and headers["X-Model-Version"] == published.version == body["version"]
        assert headers["X-Model-Variant"] == ("pinned" if query else "stable")


def test_unknown_names_and_versions_add_no_metric_dimensions(handler, published, capsys):
    unknown = "20000101T000000Z-00000000"
    capsys.readouterr()
    for evt in (
        event("predict_digits", queryStringParameters={"version": unknown}),
        event("predict_unknown_model", queryStringParameters={"version": unknown}),
        event("predict_unknown_model"),
    ):
        assert handler(evt)[0] == 404
    emf = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert not [line for line in emf if unknown in line or '"model"' in line], emf
    handler(event("predict_digits"))  # a resolved version still gets its dimensions
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any(b.get("model") == "digits" and b.get("version") == published.version for b in emf)


def test_v2_ready_means_the_registry_can_be_read(handler, published, s3):
    assert handler(event("v2_health_ready")) == (200, {"ready": True})
    from maas_core.functions.api import app

    app._registry_read_at.clear()  # past READY_TTL_SECONDS
    for key in [o["Key"] for o in s3.list_objects_v2(Bucket=os.environ["MODEL_BUCKET"])["Contents"]]:
        s3.delete_object(Bucket=os.environ["MODEL_BUCKET"], Key=key)
    s3.delete_bucket(Bucket=os.environ["MODEL_BUCKET"])
    status, body = handler(event("v2_health_ready"))
    assert (status, body["code"]) == (503, "registry_unavailable")


def test_the_openapi_document_declares_the_name_patterns(handler, published):
    import re

    from maas_core.functions.api import app

    document = json.loads(app.lambda_handler(event("openapi_spec"), Context())["body"])
    params = {
        (p["in"], p["name"]): p["schema"]
        for item in document["paths"].values()
        for op in item.values()
        for p in op.get("parameters", [])
    }
    for where, name in (("path", "name"), ("path", "version"), ("path", "job_id"), ("query", "version")):
        pattern = params[(where, name)].get("pattern") or params[(where, name)]["anyOf"][0]["pattern"]
        assert pattern.startswith("^") and pattern.endswith("$"), (where, name, pattern)
        assert not re.fullmatch(pattern[1:-1], "x" * 100)
    alias = params[("query", "alias")]
    assert alias["anyOf"][0]["pattern"] == "^[a-z][a-z0-9-]{0,31}$"


SWAGGER_CHILD = r"""
import json, sys
from moto import mock_aws
import boto3
MODELS = "aws_lambda_powertools.event_handler.openapi.models"
with mock_aws():
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=sys.argv[1])
    from maas_core.functions.api import app
    from tests_support import Context, event
    imported_at_init = MODELS in sys.modules
    wrong = app.lambda_handler(event("swagger_ui", httpMethod="POST"), Context())
    page = app.lambda_handler(event("swagger_ui"), Context())
    again = app.lambda_handler(event("swagger_ui"), Context())
    print(json.dumps({
        "imported_at_init": imported_at_init,
        "post": [wrong["statusCode"], (wrong.get("multiValueHeaders") or {}).get("Allow")],
        "get": [page["statusCode"], "swagger-ui" in page["body"], again["body"] == page["body"]],
    }))
"""


def test_swagger_is_set_up_by_its_first_request_not_during_init(monkeypatch):
    """Powertools' enable_swagger imports its OpenAPI models, about 50 ms of every cold start that only /swagger
    needs: INIT no longer pays it, and /swagger answers as before, a wrong method included (405, Allow: GET)."""
    import subprocess
    import sys
    from pathlib import Path

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))  # tests_support
    done = subprocess.run(
        [sys.executable, "-c", SWAGGER_CHILD, os.environ["MODEL_BUCKET"]], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"imported_at_init": False, "post": [405, ["GET"]], "get": [200, True, True]}, done.stderr[-2000:]


TRACED_CHILD = r"""
import json, os, socket, sys
daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # where X-Ray's daemon would listen
daemon.bind(("127.0.0.1", 0))
daemon.settimeout(0.5)
os.environ["AWS_XRAY_DAEMON_ADDRESS"] = "127.0.0.1:%d" % daemon.getsockname()[1]
from moto import mock_aws
import boto3


def sent():
    entities = []
    try:
        while True:
            header, body = daemon.recv(65536).decode().split("\n", 1)
            entities.append(json.loads(body))
    except socket.timeout:
        return entities


with mock_aws():
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=sys.argv[1])
    from maas_core.shared.registry import Registry
    from maas_core.shared.aws import s3_client
    from tests_support import Context, build_digits_onnx, digits_manifest, event
    Registry(sys.argv[1], s3_client()).publish("digits", build_digits_onnx(), digits_manifest())
    from maas_core.functions.api import app
    digit = [[[13.371337]] * 8] * 8
    request = event("predict_digits", body=json.dumps({"instances": [digit]}))
    cold = app.lambda_handler(request, Context())
    sent()
    warm = app.lambda_handler(request, Context())
    entities = sent()
    print(json.dumps({
        "tracing": not app.tracer.disabled,
        "status": [cold["statusCode"], warm["statusCode"]],
        "warm": [e["name"] for e in entities],
        "values_sent": any("13.371337" in json.dumps(e) for e in entities),
    }))
"""


def test_a_traced_warm_prediction_sends_x_ray_one_subsegment_and_no_data(monkeypatch):
    # With active tracing (the template's), X-Ray streams each subsegment as it closes: a subsegment per route
    # beside the handler's cost a warm prediction 0.04 ms of its 0.27. Neither may carry the client's numbers.
    import subprocess
    import sys
    from pathlib import Path

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),  # tests_support
        "LAMBDA_TASK_ROOT": str(Path(__file__).resolve().parents[2] / "src"),  # as on Lambda: X-Ray's Lambda mode
        "AWS_LAMBDA_FUNCTION_NAME": "ApiFunction",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",  # the template's Globals
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    }.items():
        monkeypatch.setenv(name, value)
    done = subprocess.run(
        [sys.executable, "-c", TRACED_CHILD, os.environ["MODEL_BUCKET"]], capture_output=True, text=True, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {
        "tracing": True,
        "status": [200, 200],
        "warm": ["## lambda_handler"],
        "values_sent": False,
    }, done.stderr[-2000:]


def test_a_request_s_numbers_never_reach_a_log_even_at_debug_level(handler, published, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    digit = [[[13.371337]] * 8] * 8
    status, _ = handler(event("predict_digits", body=json.dumps({"instances": [digit]})))
    assert status == 200
    # Powertools' resolver formats the route's arguments into a debug line on every request: the body's
    # repr says its fields' sizes, never their values.
    assert "instances='<list of 1>'" in caplog.text
    assert "13.371337" not in caplog.text + capsys.readouterr().out


def test_what_lives_as_long_as_the_container_is_out_of_the_collector_s_way(handler, published):
    # A full collection once walked every object of the imports, the S3 client and the model: a ~90 ms pause
    # about every 50th request of 32 digits (bench/results.md, the tail).
    gc.unfreeze()
    assert handler(event("predict_digits"))[0] == 200  # loads the model: frozen with everything before it
    frozen = gc.get_freeze_count()
    assert frozen > 1000
    assert handler(event("predict_digits"))[0] == 200  # a warm request freezes nothing more
    assert gc.get_freeze_count() <= frozen


def test_a_request_s_parsed_body_is_not_walked_by_the_collector(api):
    # 32 digits parse into ~2,300 lists alive at once; at CPython's default threshold (700) the collector ran
    # several times per request to find nothing to free (refcounting frees the body when the request ends).
    from maas_core.shared.http import check_body

    digits = [[[[float(i % 16)] for i in range(8)] for _ in range(8)] for _ in range(32)]
    request = event("predict_digits", body=json.dumps({"instances": digits}))
    started: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(record)
    try:
        body = check_body(request, 6 * 2**20)
    finally:
        gc.callbacks.remove(record)
    assert len(body["instances"]) == 32
    assert started == []


def test_collection_is_paused_only_while_long_lived_objects_are_made(handler, published):
    # INIT and a model load pause the collector (each collection would walk objects that never die); a
    # request's own garbage is collected as ever, so the collector is on after each.
    assert gc.isenabled()
    assert handler(event("predict_digits"))[0] == 200  # loads the model
    assert gc.isenabled()
