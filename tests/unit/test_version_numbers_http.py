"""A version's number wherever a version is accepted: the model cache, ApiFunction's /models and /v2 paths
and ?version=, AdminFunction, `maas models` and batch files pinned to a version. Events from events/, S3
from moto, real onnxruntime sessions on the digits model."""

import json
import os

import pytest

from maas_core.shared.batch import score_object
from maas_core.shared.errors import VersionNotFound
from maas_core.shared.model_cache import ModelCache
from tests_support import event

BUCKET = os.environ["MODEL_BUCKET"]
V1, V2, V3 = "20260101T000000Z-00000001", "20260102T000000Z-00000002", "20260103T000000Z-00000003"


@pytest.fixture
def versions(registry, digits_onnx, make_manifest):
    """Three versions, numbered 1, 2, 3; production names the first."""
    return [registry.publish("digits", digits_onnx, make_manifest(), version=v).version for v in (V1, V2, V3)]


def at_version(name: str, version: str, **changes) -> dict:
    """An event of events/ whose path names ``version`` instead of the one it pins."""
    evt = event(name, **changes)
    pinned = evt["pathParameters"]["version"]
    evt["path"] = evt["path"].replace(pinned, version)
    evt["pathParameters"] = {**evt["pathParameters"], "version": version}
    return evt


def test_the_model_cache_resolves_a_number_to_the_version_that_took_it(registry, versions):
    models = ModelCache(BUCKET, registry=registry)
    assert models.resolve("digits", "2") == V2
    assert models.pick("digits", "3") == (V3, "pinned")
    assert models.get("digits", "1").version == V1
    with pytest.raises(VersionNotFound):
        models.resolve("digits", "4")


def test_api_describes_and_predicts_a_version_given_by_its_number(api, versions):
    status, body, _ = api(at_version("describe_model_version", "2"))
    assert status == 200 and (body["version"], body["version_number"]) == (V2, 2)
    assert body["manifest"]["version"] == V2 and body["manifest"]["version_number"] == 2
    status, body, _ = api(event("describe_model", queryStringParameters={"version": "3"}))
    assert status == 200 and (body["version"], body["version_number"]) == (V3, 3)
    status, body, headers = api(at_version("predict_digits_version", "2"))
    assert status == 200 and body["version"] == V2 and body["predictions"][0]["label"] == "0"
    assert (headers["X-Model-Version"], headers["X-Model-Variant"]) == (V2, "pinned")
    status, body, headers = api(event("predict_digits", queryStringParameters={"version": "3"}))
    assert status == 200 and body["version"] == headers["X-Model-Version"] == V3


def test_v2_takes_a_number_as_its_model_version(api, versions):
    status, body, _ = api(at_version("v2_model_version_metadata", "2"))
    assert status == 200 and body["name"] == "digits"
    status, body, _ = api(at_version("v2_model_version_ready", "1"))
    assert status == 200 and body["version"] == V1 and body["ready"] is True
    status, body, headers = api(at_version("v2_infer_digits_version", "3"))
    assert status == 200 and body["model_version"] == headers["X-Model-Version"] == V3


@pytest.mark.parametrize(
    "route",
    ["describe_model_version", "predict_digits_version", "v2_model_version_metadata", "v2_infer_digits_version"],
)
def test_an_unknown_number_is_a_404_and_a_malformed_one_a_400(api, versions, route):
    status, body, _ = api(at_version(route, "9"))
    assert (status, body["code"]) == (404, "version_not_found") and "version number 9" in body["error"]
    evt = at_version(route, "1")
    evt["path"] = evt["path"].replace("/digits/", "/nothing/")
    evt["pathParameters"]["name"] = "nothing"
    status, body, _ = api(evt)
    assert (status, body["code"]) == (404, "model_not_found")
    for bad in ("0", "-1", "01", "1.5", "1e3", "1234567890"):
        status, body, _ = api(at_version(route, bad))
        assert (status, body["code"]) == (400, "invalid_name"), (bad, body)


@pytest.mark.parametrize("bad", ["0", "-2", "007"])
def test_a_version_query_that_is_no_number_is_a_400(api, versions, bad):
    status, body, _ = api(event("predict_digits", queryStringParameters={"version": bad}))
    assert (status, body["code"]) == (400, "invalid_name")


def test_a_deleted_versions_number_answers_404_not_another_version(
    api, admin, registry, versions, digits_onnx, make_manifest
):
    status, body, _ = admin(at_version("admin_delete_version", "3"))
    assert status == 200 and body == {"model": "digits", "version": V3, "deleted": True}
    later = registry.publish("digits", digits_onnx, make_manifest(), version="20260104T000000Z-00000004")
    assert later.version_number == 4
    status, body, _ = api(at_version("predict_digits_version", "3"))
    assert (status, body["code"]) == (404, "version_not_found")


def with_body(name: str, **body) -> dict:
    evt = event(name)
    evt["body"] = json.dumps(body)
    return evt


def test_admin_promotes_and_sets_a_canary_by_number_and_records_the_full_version(admin, registry, versions):
    status, body, _ = admin(with_body("admin_promote", version="2", reason="by number"))
    assert status == 200 and (body["version"], body["previous_version"]) == (V2, V1)
    status, body, _ = admin(with_body("admin_promote", canary={"version": "3", "weight": 0.25}))
    assert status == 200 and body["canary"] == {"version": V3, "weight": 0.25}
    assert registry.read_alias("digits", "production").canary_version == V3
    for version, status_code, code in (("9", 404, "version_not_found"), ("0", 400, "invalid_name")):
        status, body, _ = admin(with_body("admin_promote", version=version))
        assert (status, body["code"]) == (status_code, code)
    status, body, _ = admin(at_version("admin_delete_version", "3"))
    assert (status, body["code"]) == (409, "version_in_use")
    status, body, _ = admin(at_version("admin_delete_version", "1"))
    assert status == 200 and body["version"] == V1
    assert registry.list_versions("digits") == [V2, V3]


def test_the_cli_takes_numbers_and_shows_them(registry, versions):
    from maas.cli import build_parser
    from maas.models_cli import run as run_command

    def cli(*argv: str):
        return run_command(registry, build_parser().parse_args(["models", *argv]))

    numbered = [{"version": V1, "number": 1}, {"version": V2, "number": 2}, {"version": V3, "number": 3}]
    assert cli("list") == [{"name": "digits", "aliases": {"production": V1}, "versions": numbered}]
    described = cli("describe", "digits", "--version", "2")
    assert (described["version"], described["version_number"], described["versions"]) == (V2, 2, numbered)
    assert cli("promote", "digits", "3")["version"] == V3
    assert cli("canary", "digits", "2", "--weight", "10")["canary"] == {"version": V2, "weight": 0.1}
    assert cli("delete", "digits", "1") == {"name": "digits", "version": V1, "deleted": True}
    with pytest.raises(VersionNotFound):
        cli("promote", "digits", "7")


def test_a_batch_file_pinned_to_a_number_is_scored_by_that_version(s3, registry, versions):
    from sklearn.datasets import load_digits

    images = load_digits().images[:3, :, :, None]
    key = "batch/in/digits/2/day/input.jsonl"
    body = "".join(json.dumps({"id": f"r{i}", "instances": [img.tolist()]}) + "\n" for i, img in enumerate(images))
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())["ETag"]
    summary = score_object(s3, BUCKET, key, etag, ModelCache(BUCKET, registry=registry), chunk_rows=16)
    assert (summary["status"], summary["ref"], summary["version"], summary["scored"]) == ("succeeded", "2", V2, 3)
    key = "batch/in/digits/9/day/input.jsonl"
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())["ETag"]
    with pytest.raises(VersionNotFound):
        score_object(s3, BUCKET, key, etag, ModelCache(BUCKET, registry=registry), chunk_rows=16)
