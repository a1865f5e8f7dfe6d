"""When the registry breaks under a warm container: each failure is a 503 with a stable code, counted in
the metrics, while the version the container already holds keeps answering."""

import hashlib
import json
import os

import pytest
from botocore.exceptions import ReadTimeoutError

from maas_core.shared.registry import manifest_key, model_key
from tests_support import event

BUCKET = os.environ["MODEL_BUCKET"]
V2 = "20991231T000000Z-0000000b"


@pytest.fixture
def warm(api, registry, published, digits_onnx, make_manifest):
    """A container that served v1 (so it holds it) and a v2 in the registry, not yet loaded."""
    status, body, _ = api(event("predict_digits"))
    assert status == 200 and body["version"] == published.version
    registry.publish("digits", digits_onnx, make_manifest(), version=V2)
    return published.version


def predict_version(version: str) -> dict:
    return event(
        "predict_digits_version",
        path=f"/models/digits/versions/{version}/predict",
        pathParameters={"name": "digits", "version": version},
    )


def assert_held_version_still_answers(api, held: str) -> None:
    status, body, headers = api(predict_version(held))
    assert status == 200 and body["version"] == held and headers["X-Model-Variant"] == "pinned"


def test_a_corrupt_model_is_a_503_and_the_held_version_still_answers(api, s3, warm, capsys, caplog):
    s3.put_object(Bucket=BUCKET, Key=model_key("digits", V2), Body=b"\x00" * 1000)
    capsys.readouterr()
    status, body, _ = api(predict_version(V2))
    assert status == 503 and body["code"] == "model_integrity_error"
    assert "Traceback" not in json.dumps(body)
    assert any(getattr(r, "code", None) == "model_integrity_error" for r in caplog.records)  # logged with its code
    counted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"ServerErrors"' in line]
    assert counted and counted[-1]["version"] == V2 and counted[-1]["ServerErrors"] in (1, 1.0, [1.0])
    assert_held_version_still_answers(api, warm)


def test_a_truncated_model_is_a_503(api, s3, warm, digits_onnx):
    s3.put_object(Bucket=BUCKET, Key=model_key("digits", V2), Body=digits_onnx[: len(digits_onnx) // 2])
    status, body, _ = api(predict_version(V2))
    assert status == 503 and body["code"] == "model_integrity_error"
    assert body["details"]["received_size"] == len(digits_onnx) // 2
    assert_held_version_still_answers(api, warm)


def test_a_model_onnxruntime_cannot_load_despite_its_hash_is_a_503(api, s3, warm):
    """Written behind the registry's back (publish would refuse it): the hash matches, the graph does not load."""
    junk = b"\x08\x07" + b"definitely not a graph" * 10
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key("digits", V2))["Body"].read())
    manifest["artifact"] = {"file": "model.onnx", "sha256": hashlib.sha256(junk).hexdigest(), "size_bytes": len(junk)}
    s3.put_object(Bucket=BUCKET, Key=model_key("digits", V2), Body=junk)
    s3.put_object(Bucket=BUCKET, Key=manifest_key("digits", V2), Body=json.dumps(manifest))
    status, body, _ = api(predict_version(V2))
    assert status == 503 and body["code"] == "model_load_failed"
    assert_held_version_still_answers(api, warm)


def test_an_alias_naming_a_deleted_version_is_a_503(api, s3, registry, warm):
    registry.promote("digits", "production", V2, actor="ana", reason="")
    for key in (manifest_key("digits", V2), model_key("digits", V2)):
        s3.delete_object(Bucket=BUCKET, Key=key)  # deleted behind the registry's back
    status, body, _ = api(event("predict_digits"))
    assert status == 503 and body["code"] == "alias_target_missing"
    assert body["details"] == {"model": "digits", "alias": "production", "version": V2}
    assert_held_version_still_answers(api, warm)


def test_s3_unreachable_is_a_503_and_what_is_held_keeps_answering(api, registry, warm, monkeypatch):
    import boto3
    from botocore.config import Config

    dead = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens
        config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
    )
    monkeypatch.setattr(registry, "s3", dead)
    status, body, _ = api(predict_version(V2))
    assert status == 503 and body["code"] == "registry_unavailable"
    assert_held_version_still_answers(api, warm)
    status, body, _ = api(event("predict_digits"))  # the alias: its last known resolution is kept
    assert status == 200 and body["version"] == warm


def test_s3_timing_out_mid_download_is_a_503(api, registry, warm, monkeypatch):
    real_get = registry.s3.get_object

    class StallingBody:
        def read(self):
            raise ReadTimeoutError(endpoint_url="https://s3.amazonaws.com")

    def get_object(**kwargs):
        response = real_get(**kwargs)
        if kwargs["Key"].endswith("model.onnx"):
            response["Body"] = StallingBody()
        return response

    monkeypatch.setattr(registry.s3, "get_object", get_object)
    status, body, _ = api(predict_version(V2))
    assert status == 503 and body["code"] == "registry_unavailable"
    assert_held_version_still_answers(api, warm)


def test_an_unreadable_alias_keeps_the_last_good_version_answering(api, s3, warm, caplog):
    s3.put_object(Bucket=BUCKET, Key="models/digits/aliases/production.json", Body=b"{not json")
    for _ in range(3):
        status, body, headers = api(event("predict_digits"))
        assert status == 200 and body["version"] == warm and headers["X-Model-Variant"] == "stable"
    assert any("last good resolution" in r.getMessage() for r in caplog.records)
