import json
import os

import pytest

from maas_core.shared.errors import (
    AliasConflict,
    InvalidName,
    ModelIntegrityError,
    ModelNotFound,
    VersionExists,
    VersionNotFound,
)
from maas_core.shared.registry import manifest_key, model_key

BUCKET = os.environ["MODEL_BUCKET"]


def test_publish_writes_model_and_manifest_and_sets_production(registry, s3, digits_onnx, published):
    version = published.version
    assert registry.list_models() == ["digits"]
    assert registry.list_versions("digits") == [version]
    assert registry.resolve("digits") == version
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key("digits", version))["Body"].read())
    assert stored["artifact"]["size_bytes"] == len(digits_onnx)
    assert stored["name"] == "digits" and stored["version"] == version
    assert s3.get_object(Bucket=BUCKET, Key=model_key("digits", version))["Body"].read() == digits_onnx


def test_a_version_is_never_overwritten(registry, digits_onnx, published, make_manifest):
    with pytest.raises(VersionExists):
        registry.publish("digits", b"other bytes", make_manifest(), version=published.version)
    assert registry.read_model("digits", published.version, published) == digits_onnx


def test_second_publish_does_not_move_production(registry, digits_onnx, published, make_manifest):
    second = registry.publish("digits", digits_onnx + b"", make_manifest(), version="20991231T000000Z-0000000a")
    assert registry.resolve("digits") == published.version
    assert registry.resolve("digits", second.version) == second.version


@pytest.mark.parametrize("bad", ["../etc", "Digits", "a/b", "", "x" * 64, "-lead", "a..b"])
def test_bad_names_are_refused_before_s3(registry, bad):
    with pytest.raises(InvalidName) as err:
        registry.resolve(bad)
    assert err.value.status == 400


def test_a_manifest_missing_fields_is_refused(registry, digits_onnx, make_manifest):
    manifest = make_manifest()
    del manifest["inputs"]
    with pytest.raises(ModelIntegrityError) as err:
        registry.publish("digits", digits_onnx, manifest)
    assert "inputs: missing" in err.value.details["problems"]
    assert registry.list_versions("digits") == []


def test_alias_refuses_missing_version_and_stale_etag(registry, digits_onnx, published, make_manifest):
    current = registry.read_alias("digits", "production")
    with pytest.raises(VersionNotFound):
        registry.set_alias("digits", "production", "20991231T000000Z-deadbeef", expected_etag=current.etag)
    second = registry.publish("digits", digits_onnx, make_manifest(), version="20991231T000000Z-0000000b")
    moved = registry.set_alias("digits", "production", second.version, expected_etag=current.etag)
    assert moved.body["previous_version"] == published.version
    with pytest.raises(AliasConflict):  # the first writer won; a second with the old ETag loses
        registry.set_alias("digits", "production", published.version, expected_etag=current.etag)
    assert registry.resolve("digits") == second.version


def test_unknown_model_and_version(registry, published):
    with pytest.raises(ModelNotFound):
        registry.resolve("nope")
    with pytest.raises(VersionNotFound):
        registry.read_manifest("digits", "20000101T000000Z-00000000")


def test_a_version_without_its_manifest_is_not_visible(registry, s3, digits_onnx, published):
    s3.put_object(Bucket=BUCKET, Key=model_key("digits", "20991231T000000Z-0000000d"), Body=digits_onnx)
    assert registry.list_versions("digits") == [published.version]


@pytest.mark.parametrize(
    ("kind", "bad"),
    [("name", "digits\n"), ("version", "20991231T000000Z-0000000b\n"), ("alias", "production\n")],
)
def test_a_trailing_newline_is_refused_in_names_versions_and_aliases(registry, s3, published, kind, bad):
    """``$`` matches before a final newline: "digits\\n" used to pass and reach S3 as a key of its own."""
    from maas_core.shared.registry import check_alias, check_name, check_version

    check = {"name": check_name, "version": check_version, "alias": check_alias}[kind]
    with pytest.raises(InvalidName) as err:
        check(bad)
    assert err.value.status == 400 and err.value.details["received"] == bad
    with pytest.raises(InvalidName):
        registry.promote(
            bad if kind == "name" else "digits",
            bad if kind == "alias" else "staging",
            bad if kind == "version" else published.version,
            actor="ana",
            reason="",
        )
    assert all("\n" not in o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
