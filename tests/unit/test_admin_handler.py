"""AdminFunction and CanaryGuardFunction on the events in events/, S3 from moto."""

import json
import os

import pytest

from maas_core.shared.registry import model_key
from tests_support import Context, event

BUCKET = os.environ["MODEL_BUCKET"]
V1 = "20260101T000000Z-00000000"
V2 = "20260102T000000Z-00000001"
ROLE = "arn:aws:sts::123456789012:assumed-role/MaasRelease/release-bot"


@pytest.fixture
def versions(registry, digits_onnx, make_manifest):
    """The two versions the admin events name, production on the first."""
    registry.publish("digits", digits_onnx, make_manifest(), version=V1)
    registry.publish("digits", digits_onnx, make_manifest(), version=V2)
    return V1, V2


def with_body(name: str, **body) -> dict:
    evt = event(name)
    evt["body"] = json.dumps(body)
    return evt


def test_promote_then_rollback_over_http_records_the_iam_caller(admin, registry, versions):
    status, body, _ = admin(event("admin_promote"))
    assert status == 200 and body["version"] == V2 and body["previous_version"] == V1 and body["etag"]
    assert registry.resolve("digits") == V2
    status, body, _ = admin(event("admin_rollback"))
    assert status == 200 and body["version"] == V1
    status, body, _ = admin(event("admin_alias_history"))
    assert status == 200
    assert [(c["version"], c["updated_by"], c["reason"]) for c in body["changes"]] == [
        (V1, "maas", "first publish"),
        (V2, ROLE, "better accuracy on the held-out set"),
        (V1, ROLE, "v2 errors in production"),
    ]


def test_a_stale_etag_is_a_409_and_changes_nothing(admin, registry, versions):
    status, body, _ = admin(with_body("admin_promote", version=V2, if_match='"0123456789abcdef"'))
    assert status == 409 and body["code"] == "alias_conflict"
    assert registry.resolve("digits") == V1
    _, current, _ = admin(event("admin_read_alias"))
    status, body, _ = admin(with_body("admin_promote", version=V2, if_match=current["etag"]))
    assert status == 200 and body["version"] == V2


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "invalid_request"),
        ({"version": "latest"}, 400, "invalid_name"),
        ({"version": "20991231T000000Z-deadbeef"}, 404, "version_not_found"),
        ({"canary": {"version": V2, "weight": 1.5}}, 422, "invalid_request"),
        ({"canary": {"version": V2}}, 422, "invalid_request"),
        ({"version": V2, "owner": "me"}, 422, "invalid_request"),
    ],
)
def test_bad_alias_changes_name_what_was_expected(admin, registry, versions, body, status, code):
    got_status, got, _ = admin(with_body("admin_promote", **body))
    assert (got_status, got["code"]) == (status, code)
    assert got["error"]
    assert registry.resolve("digits") == V1


def test_a_canary_splits_traffic_and_responses_say_which_version_answered(admin, api, registry, versions):
    status, body, _ = admin(event("admin_canary"))
    assert status == 200 and body["canary"] == {"version": V2, "weight": 0.1}
    seen = {}
    for i in range(200):
        evt = event("predict_digits")
        evt["headers"] = {**evt["headers"], "X-Request-Id": f"client-{i}"}
        status, answer, headers = api(evt)
        assert status == 200 and answer["version"] == headers["X-Model-Version"]
        seen[i] = (headers["X-Model-Version"], headers["X-Model-Variant"])
    variants = [variant for _, variant in seen.values()]
    assert 5 <= variants.count("canary") <= 40 and set(seen.values()) == {(V1, "stable"), (V2, "canary")}
    evt = event("predict_digits")
    evt["headers"] = {**evt["headers"], "X-Request-Id": "client-3"}
    assert api(evt)[2]["X-Model-Version"] == seen[3][0]  # the same request id, the same version
    status, body, _ = admin(with_body("admin_canary", canary=None, reason="enough"))
    assert status == 200 and body["canary"] is None
    assert {api(event("predict_digits"))[2]["X-Model-Variant"] for _ in range(20)} == {"stable"}


def test_canary_metrics_are_per_version_and_separate_for_the_alarm(admin, api, registry, versions, capsys):
    registry.set_canary("digits", "production", V2, 0.5, actor="t", reason="")
    capsys.readouterr()
    for i in range(10):
        evt = event("predict_digits")
        evt["headers"] = {**evt["headers"], "X-Request-Id": f"m-{i}"}
        api(evt)
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    per_version = [b for b in blobs if "Requests" in b]
    assert {b["version"] for b in per_version} == {V1, V2}
    assert all(b["ServerErrors"] in (0, 0.0, [0.0]) for b in per_version)
    canary = [b for b in blobs if "CanaryRequests" in b or "CanaryErrors" in b]
    assert canary and all(b["variant"] == "canary" and "model" not in b for b in canary)


def test_a_version_in_use_cannot_be_deleted_over_http(admin, registry, versions):
    status, body, _ = admin(event("admin_delete_version"))
    assert status == 409 and body["code"] == "version_in_use" and body["details"]["alias"] == "production"
    admin(event("admin_promote"))
    status, body, _ = admin(event("admin_delete_version"))
    assert status == 200 and body["deleted"] is True
    assert registry.list_versions("digits") == [V2]


def test_the_canary_alarm_ends_every_canary_and_nothing_else(registry, versions):
    from maas_core.functions.canary_guard import app

    registry.set_canary("digits", "production", V2, 0.1, actor="ana", reason="try")
    registry.promote("digits", "staging", V2, actor="ana", reason="")
    result = app.lambda_handler(event("canary_alarm"), Context())
    assert result["ended"] == [
        {"model": "digits", "alias": "production", "canary": {"version": V2, "weight": 0.1}, "version": V1}
    ]
    assert registry.list_canaries("digits") == {}
    assert registry.list_aliases("digits") == {"production": V1, "staging": V2}
    last = registry.alias_history("digits", "production")[-1]
    assert last["updated_by"] == "canary-guard" and "maas-canary-errors" in last["reason"]
    ok = event("canary_alarm")
    ok["detail"]["state"]["value"] = "OK"
    assert app.lambda_handler(ok, Context())["ended"] == []


@pytest.mark.parametrize("request_name", ["admin_canary", "admin_promote"])
def test_a_corrupt_version_is_a_409_version_corrupt_and_nothing_is_recorded(
    admin, registry, s3, versions, request_name
):
    key = model_key("digits", V2)
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=data[:-10] + b"0123456789")  # same size, other bytes
    history = registry.alias_history("digits", "production")
    status, body, _ = admin(event(request_name))
    assert (status, body["code"]) == (409, "version_corrupt"), body
    assert V2 in body["error"] and "sha256" in body["details"]["problems"][0]
    assert registry.read_alias("digits", "production").body["canary"] is None
    assert registry.resolve("digits") == V1
    assert registry.alias_history("digits", "production") == history


def test_a_put_with_a_version_repairs_an_unreadable_alias_and_the_history_records_it(
    admin, api, registry, s3, versions
):
    broken = s3.put_object(Bucket=BUCKET, Key="models/digits/aliases/production.json", Body=b"\x00garbage")["ETag"]
    status, body, _ = admin(event("admin_read_alias"))
    assert (status, body["code"]) == (503, "model_integrity_error")
    status, body, _ = admin(with_body("admin_canary", canary={"version": V2, "weight": 0.1}))
    assert (status, body["code"]) == (409, "alias_unreadable") and "give a version" in body["error"]
    status, body, _ = admin(event("admin_promote"))
    assert status == 200 and body["version"] == V2, body
    assert api(event("predict_digits"))[2]["X-Model-Version"] == V2  # serving follows the repaired alias
    _, history, _ = admin(event("admin_alias_history"))
    last = history["changes"][-1]
    assert last["version"] == V2 and last["from"] is None and last["updated_by"] == ROLE
    assert last["replaced_unreadable"]["etag"] == broken and "unreadable" in last["replaced_unreadable"]["note"]


def test_the_admin_resolver_serves_exactly_the_admin_routes_table():
    # ApiFunction's 405 names these methods in Allow: the table must be what AdminFunction serves.
    from maas_core.functions.admin import app
    from maas_core.shared.rest_errors import ADMIN_ROUTES

    served = {(r.method, r.path) for r in app.app._static_routes + app.app._dynamic_routes}
    assert served == {(m, path) for path, methods in ADMIN_ROUTES.items() for m in methods}
