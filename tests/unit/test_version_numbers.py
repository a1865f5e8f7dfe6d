"""Version numbers (ARCHITECTURE.md, "Registry layout": version numbers): every published version takes
1, 2, 3 ... by a conditional put, and the number is accepted wherever a version is. S3 is moto's."""

import json
import os

import boto3
import pytest

from maas_core.shared import layout
from maas_core.shared.errors import InvalidName, ModelNotFound, VersionInUse, VersionNotFound
from maas_core.shared.registry import Registry

BUCKET = os.environ["MODEL_BUCKET"]
V1, V2, V3 = "20260101T000000Z-00000001", "20260102T000000Z-00000002", "20260103T000000Z-00000003"


def stored_number(s3, name: str, number: int) -> str:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=layout.number_key(name, number))["Body"].read())["version"]


def test_versions_are_numbered_1_2_3_in_publication_order(registry, s3, digits_onnx, make_manifest):
    published = [registry.publish("digits", digits_onnx, make_manifest(), version=v) for v in (V1, V2, V3)]
    assert [m.version_number for m in published] == [1, 2, 3]
    for number, version in enumerate((V1, V2, V3), start=1):
        manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=layout.manifest_key("digits", version))["Body"].read())
        assert manifest["version_number"] == number and manifest["version"] == version
        assert stored_number(s3, "digits", number) == version
        assert registry.resolve("digits", str(number)) == version
    assert registry.read_manifest("digits", V2).version_number == 2
    assert registry.numbered_versions("digits") == [
        {"version": V1, "number": 1},
        {"version": V2, "number": 2},
        {"version": V3, "number": 3},
    ]
    # Numbers belong to their model: another model starts at 1.
    assert registry.publish("iris", digits_onnx, make_manifest(), version=V3).version_number == 1


def test_a_number_in_a_trainers_draft_is_replaced_by_the_registrys(registry, digits_onnx, make_manifest):
    registry.publish("digits", digits_onnx, make_manifest(), version=V1)
    second = registry.publish("digits", digits_onnx, {**make_manifest(), "version_number": 1}, version=V2)
    assert second.version_number == 2 and second.to_json()["version_number"] == 2


def test_two_publishers_racing_for_a_number_get_distinct_numbers(registry, s3, digits_onnx, make_manifest):
    """Publisher A reads the numbers taken (none), then, before its conditional put, publisher B (another
    client, a real write to the same bucket) publishes and takes 1: A's put loses, and A takes 2."""
    other = Registry(BUCKET, boto3.client("s3", region_name="us-east-1"))
    raced: list[int] = []

    def second_writer(params, **_):
        if layout.number_of("digits", params["Key"]) is not None and not raced:
            raced.append(other.publish("digits", digits_onnx, make_manifest(), version=V2).version_number)

    s3.meta.events.register("before-parameter-build.s3.PutObject", second_writer)
    first = registry.publish("digits", digits_onnx, make_manifest(), version=V1, alias_on_first_publish=None)
    assert raced == [1] and first.version_number == 2
    assert (stored_number(s3, "digits", 1), stored_number(s3, "digits", 2)) == (V2, V1)
    assert registry.resolve("digits", "1") == V2 and registry.resolve("digits", "2") == V1
    assert registry.resolve("digits") == V2  # B's first publish set production; A's lost and left it


def test_a_deleted_versions_number_is_never_given_again(registry, digits_onnx, make_manifest):
    for version in (V1, V2):
        registry.publish("digits", digits_onnx, make_manifest(), version=version)
    registry.delete_version("digits", "2")  # by its number
    assert registry.list_versions("digits") == [V1]
    third = registry.publish("digits", digits_onnx, make_manifest(), version=V3)
    assert third.version_number == 3
    # 2 still names the deleted version: 404, never another version's model.
    assert registry.resolve("digits", "2") == V2
    with pytest.raises(VersionNotFound):
        registry.read_manifest("digits", registry.resolve("digits", "2"))


def published_before_numbers(registry, s3, digits_onnx, make_manifest) -> Registry:
    """V1 and V2 of digits as a publisher before numbers left them: no number object, none in the manifest."""
    for version in (V2, V1):  # published in any order: numbered by their time-sortable ids
        registry.publish("digits", digits_onnx, make_manifest(), version=version)
    for number in (1, 2):
        s3.delete_object(Bucket=BUCKET, Key=layout.number_key("digits", number))
    for version in (V1, V2):
        key = layout.manifest_key("digits", version)
        old = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        del old["version_number"]
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(old).encode())
    return Registry(BUCKET, s3)  # a container that never saw the numbers this setup removed


def test_versions_published_before_numbers_are_numbered_oldest_first_at_the_next_publish(
    registry, s3, digits_onnx, make_manifest
):
    registry = published_before_numbers(registry, s3, digits_onnx, make_manifest)
    assert registry.numbered_versions("digits") == [{"version": V1, "number": None}, {"version": V2, "number": None}]
    assert registry.read_manifest("digits", V1).version_number is None  # older manifests stay valid
    with pytest.raises(VersionNotFound):
        registry.resolve("digits", "1")
    assert registry.publish("digits", digits_onnx, make_manifest(), version=V3).version_number == 3
    assert [registry.resolve("digits", n) for n in ("1", "2", "3")] == [V1, V2, V3]
    assert registry.number_of(registry.read_manifest("digits", V2)) == 2


def test_maas_models_number_numbers_them_without_a_publish(registry, s3, digits_onnx, make_manifest):
    import argparse

    from maas.models_cli import run as run_command

    registry = published_before_numbers(registry, s3, digits_onnx, make_manifest)
    numbered = [{"version": V1, "number": 1}, {"version": V2, "number": 2}]
    for _ in range(2):  # again: nothing changes, no number is taken twice
        answer = run_command(registry, argparse.Namespace(models_command="number", name="digits"))
        assert answer == {"name": "digits", "versions": numbered}
    assert [registry.resolve("digits", n) for n in ("1", "2")] == [V1, V2]
    assert registry.publish("digits", digits_onnx, make_manifest(), version=V3).version_number == 3
    with pytest.raises(ModelNotFound):
        run_command(registry, argparse.Namespace(models_command="number", name="nothing"))


def test_an_unknown_number_is_not_found_and_a_malformed_one_an_invalid_name(registry, digits_onnx, make_manifest):
    registry.publish("digits", digits_onnx, make_manifest(), version=V1)
    with pytest.raises(VersionNotFound) as missing:
        registry.resolve("digits", "7")
    assert missing.value.code == "version_not_found" and "version number 7" in missing.value.message
    with pytest.raises(ModelNotFound):
        registry.resolve("nothing", "1")
    for bad in ("0", "-1", "01", "1.0", "+1", "1 ", "1\n", "1234567890"):
        with pytest.raises(InvalidName):
            registry.exact_version("digits", bad)


def test_promote_canary_and_delete_take_a_number_and_record_the_full_version(registry, digits_onnx, make_manifest):
    for version in (V1, V2, V3):
        registry.publish("digits", digits_onnx, make_manifest(), version=version)
    record = registry.promote("digits", "production", "2", actor="t", reason="by number")
    assert record.version == V2 and record.body["version"] == V2 and record.body["previous_version"] == V1
    record = registry.set_canary("digits", "production", "3", 0.1, actor="t", reason="")
    assert record.canary_version == V3
    with pytest.raises(VersionInUse):
        registry.delete_version("digits", "3")
    registry.delete_version("digits", "1")
    assert registry.list_versions("digits") == [V2, V3]


def test_layout_builds_number_keys_from_numbers_only():
    assert layout.number_key("digits", 12) == "models/digits/numbers/12.json"
    assert layout.number_of("digits", "models/digits/numbers/12.json") == 12
    for key in ("models/digits/numbers/012.json", "models/digits/numbers/x.json", "models/other/numbers/1.json"):
        assert layout.number_of("digits", key) is None
    for bad in (0, -1, "1", True):
        with pytest.raises(InvalidName):
            layout.number_key("digits", bad)
    assert layout.check_ref("3") == "3" and layout.parse_key("batch/in/digits/3/day.jsonl", "e").ref == "3"
    for bad in ("0", "-1", "01"):
        with pytest.raises(InvalidName):
            layout.check_version_ref(bad)


def test_the_documents_version_pattern_accepts_what_the_registry_accepts():
    """The OpenAPI pattern of a version path or ?version= (ECMA "$": no trailing newline) is the layout's check."""
    import re

    from maas_core.shared.schemas import VERSION_REF_PATTERN

    samples = ["1", "9", "10", "999999999", "1234567890", "0", "-1", "01", "+1", "1.0", "1\n", " 1", "", "latest"]
    samples += [V1, V1 + "\n", V1.upper(), V1[:-1]]
    for sample in samples:
        try:
            accepted = bool(layout.check_version_ref(sample))
        except InvalidName:
            accepted = False
        assert bool(re.fullmatch(VERSION_REF_PATTERN[1:-1], sample)) == accepted, sample


def test_a_containers_registry_reads_each_number_object_once(registry, s3, digits_onnx, make_manifest, monkeypatch):
    """Number objects never change, so TF Serving's status (every numbered version) asked again reads
    only the listing, not every number object on each request; a number taken later is still seen."""
    registry.publish("digits", digits_onnx, make_manifest(), version="20260101T000000Z-00000001")
    registry.publish("digits", digits_onnx, make_manifest(), version="20260102T000000Z-00000002")
    first = registry.version_numbers("digits")
    assert first == {1: "20260101T000000Z-00000001", 2: "20260102T000000Z-00000002"}
    reads = []
    real = registry._get
    monkeypatch.setattr(registry, "_get", lambda key, *a, **k: reads.append(key) or real(key, *a, **k))
    assert registry.version_numbers("digits") == first
    assert reads == []  # the listing only
    Registry(registry.bucket, s3).publish("digits", digits_onnx, make_manifest(), version="20260103T000000Z-00000003")
    assert registry.version_numbers("digits")[3] == "20260103T000000Z-00000003"
    assert reads == [layout.number_key("digits", 3)]
