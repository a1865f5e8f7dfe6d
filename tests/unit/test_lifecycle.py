"""The registry as a registry: verified publishes, atomic alias changes, canaries, deletes, and a
model cache that follows them on a warm container within its memory budget."""

import hashlib
import json
import os
import threading
from collections import Counter

import pytest

from maas_core.shared.errors import (
    AliasConflict,
    AliasUnreadable,
    InvalidRequest,
    ModelIntegrityError,
    ModelRejected,
    VersionCorrupt,
    VersionExists,
    VersionInUse,
    VersionNotFound,
)
from maas_core.shared.model_cache import ModelCache
from maas_core.shared.registry import manifest_key, model_key

BUCKET = os.environ["MODEL_BUCKET"]
V2 = "20991231T000000Z-0000000b"
V3 = "20991231T000001Z-0000000c"


@pytest.fixture
def two_versions(registry, published, digits_onnx, make_manifest):
    second = registry.publish("digits", digits_onnx, make_manifest(), version=V2)
    return published.version, second.version


# -- publishing ------------------------------------------------------------------------------
def test_publish_records_the_onnxruntime_that_verified_it(published):
    import onnxruntime

    assert published.verified["onnxruntime"] == onnxruntime.__version__


def test_a_file_onnxruntime_cannot_load_is_never_visible(registry, make_manifest):
    with pytest.raises(ModelRejected) as refused:
        registry.publish("digits", b"\x08\x07not onnx at all", make_manifest())
    assert refused.value.status == 422 and refused.value.code == "model_rejected"
    assert registry.list_models() == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"inputs": [{"name": "pixels", "dtype": "float32", "shape": [None, 8, 8, 1]}]}, "inputs"),
        ({"inputs": [{"name": "image", "dtype": "int64", "shape": [None, 8, 8, 1]}]}, "int64"),
        ({"inputs": [{"name": "image", "dtype": "float32", "shape": [None, 64]}]}, "rank"),
        ({"outputs": [{"name": "logits", "dtype": "float32", "shape": [None, 10]}]}, "logits"),
    ],
)
def test_a_manifest_that_does_not_match_the_graph_is_refused(registry, digits_onnx, make_manifest, change, problem):
    with pytest.raises(ModelRejected) as refused:
        registry.publish("digits", digits_onnx, {**make_manifest(), **change})
    assert any(problem in line for line in refused.value.details["problems"])
    assert registry.list_models() == []


def test_publishing_the_same_version_twice_is_refused(registry, digits_onnx, make_manifest, published):
    with pytest.raises(VersionExists):
        registry.publish("digits", digits_onnx, make_manifest(), version=published.version)


# -- aliases -----------------------------------------------------------------------------------
def test_two_racing_promotes_leave_one_winner_and_one_conflict(registry, two_versions, digits_onnx, make_manifest):
    first, second = two_versions
    third = registry.publish("digits", digits_onnx, make_manifest(), version=V3).version
    etag = registry.read_alias("digits", "production").etag
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def promote(version: str) -> None:
        barrier.wait()
        try:
            outcomes[version] = registry.promote(
                "digits", "production", version, actor=version, reason="race", if_match=etag
            )
        except AliasConflict as conflict:
            outcomes[version] = conflict

    threads = [threading.Thread(target=promote, args=(v,)) for v in (second, third)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [v for v, outcome in outcomes.items() if not isinstance(outcome, AliasConflict)]
    losers = [outcome for outcome in outcomes.values() if isinstance(outcome, AliasConflict)]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].status == 409 and "changed concurrently" in losers[0].message
    assert registry.resolve("digits") == winners[0]
    history = registry.alias_history("digits", "production")
    assert [h["version"] for h in history] == [first, winners[0]]  # the loser left no trace


def test_canary_promote_and_rollback_keep_a_full_history(registry, two_versions):
    first, second = two_versions
    registry.set_canary("digits", "production", second, 0.1, actor="ana", reason="try v2")
    record = registry.read_alias("digits", "production")
    assert (record.version, record.canary_version, record.canary_weight) == (first, second, 0.1)
    assert record.body["previous_version"] is None  # a canary change does not move the rollback target
    registry.promote("digits", "production", second, actor="ana", reason="v2 is good")
    record = registry.read_alias("digits", "production")
    assert (record.version, record.canary_version) == (second, None)  # promoting the canary ends it
    registry.rollback("digits", "production", actor="bo", reason="pager")
    assert registry.resolve("digits") == first
    history = registry.alias_history("digits", "production")
    assert [(h["from"], h["version"], (h["canary"] or {}).get("version"), h["updated_by"]) for h in history] == [
        (None, first, None, "maas"),
        (first, first, second, "ana"),
        (first, second, None, "ana"),
        (second, first, None, "bo"),
    ]
    assert all(h["updated_at"] and "reason" in h for h in history)


@pytest.mark.parametrize("weight", [0, 1, 1.5, -0.1])
def test_a_canary_weight_outside_0_1_is_refused(registry, two_versions, weight):
    with pytest.raises(InvalidRequest):
        registry.set_canary("digits", "production", two_versions[1], weight, actor="ana", reason="")


def test_an_alias_cannot_name_a_missing_version_even_as_canary(registry, two_versions):
    with pytest.raises(VersionNotFound):
        registry.set_canary("digits", "production", "20991231T000009Z-deadbeef", 0.1, actor="ana", reason="")
    with pytest.raises(InvalidRequest):  # the canary must be another version
        registry.set_canary("digits", "production", two_versions[0], 0.1, actor="ana", reason="")


def test_a_version_an_alias_uses_cannot_be_deleted(registry, s3, two_versions):
    first, second = two_versions
    registry.set_canary("digits", "production", second, 0.2, actor="ana", reason="")
    for version in (first, second):
        with pytest.raises(VersionInUse):
            registry.delete_version("digits", version)
    registry.set_canary("digits", "production", None, actor="ana", reason="done")
    registry.delete_version("digits", second)
    assert registry.list_versions("digits") == [first]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert model_key("digits", second) not in keys and manifest_key("digits", second) not in keys


# -- the cache on a warm container ---------------------------------------------------------------
def test_a_10_percent_canary_answers_about_10_percent_deterministically(registry, two_versions):
    first, second = two_versions
    registry.set_canary("digits", "production", second, 0.1, actor="ana", reason="")
    cache = ModelCache(BUCKET, registry=registry)
    picks = Counter(cache.pick("digits", None, f"request-{i}") for i in range(1000))
    assert set(picks) == {(first, "stable"), (second, "canary")}
    assert 50 <= picks[(second, "canary")] <= 150
    assert {cache.pick("digits", None, "request-7") for _ in range(20)} == {cache.pick("digits", None, "request-7")}
    assert cache.get("digits").version == first  # batch files and metadata use the stable version


def test_an_unchanged_alias_is_rechecked_by_etag_without_reading_it(registry, two_versions):
    _, second = two_versions
    etag = registry.read_alias("digits", "production").etag
    assert registry.alias_changed("digits", "production", etag) is None
    registry.promote("digits", "production", second, actor="ana", reason="")
    changed = registry.alias_changed("digits", "production", etag)
    assert changed is not None and changed.version == second


def test_promote_and_rollback_reach_a_warm_cache_within_the_ttl(registry, two_versions, monkeypatch):
    import maas_core.shared.model_cache as model_cache

    first, second = two_versions
    clock = [1000.0]
    monkeypatch.setattr(model_cache.time, "monotonic", lambda: clock[0])
    cache = ModelCache(BUCKET, alias_ttl_seconds=5, registry=registry)
    assert cache.get("digits").version == first
    registry.promote("digits", "production", second, actor="ana", reason="")
    clock[0] += 4
    assert cache.get("digits").version == first  # within the TTL: the cached resolution
    clock[0] += 2
    assert cache.get("digits").version == second
    registry.rollback("digits", "production", actor="ana", reason="")
    clock[0] += 6
    assert cache.get("digits").version == first


def test_the_cache_keeps_recent_sessions_within_its_budget(registry, two_versions, digits_onnx, make_manifest):
    first, second = two_versions
    third = registry.publish("digits", digits_onnx, make_manifest(), version=V3).version
    cache = ModelCache(BUCKET, registry=registry, budget_bytes=2 * len(digits_onnx) + 1000)
    for version in (first, second, third):
        cache.get("digits", version)
    assert all(m["memory_mb"] >= 0 for m in cache.loaded())
    held = [m["version"] for m in cache.loaded()]
    assert third in held and first not in held  # least recently used went first
    assert cache.get("digits", first).version == first  # evicted versions load again on demand
    assert cache.loaded()[-1]["version"] == first


def test_a_broken_version_is_not_downloaded_again_on_every_request(registry, s3, published, monkeypatch):
    version = published.version
    s3.put_object(Bucket=BUCKET, Key=model_key("digits", version), Body=b"tampered")
    cache = ModelCache(BUCKET, registry=registry, retry_after_seconds=60)
    reads = []
    original = registry.download_model
    monkeypatch.setattr(registry, "download_model", lambda *a: reads.append(a) or original(*a))
    for _ in range(3):
        with pytest.raises(Exception) as failed:
            cache.get("digits")
        assert failed.value.code == "model_integrity_error"
    assert len(reads) == 1


def test_alias_records_survive_a_json_round_trip(registry, two_versions):
    registry.set_canary("digits", "production", two_versions[1], 0.25, actor="ana", reason="")
    stored = json.loads(
        registry.s3.get_object(Bucket=BUCKET, Key="models/digits/aliases/production.json")["Body"].read()
    )
    assert stored["canary"] == {"version": two_versions[1], "weight": 0.25}
    assert registry.list_canaries("digits") == {"production": {"version": two_versions[1], "weight": 0.25}}


# -- an alias names only a version that would serve ----------------------------------------------
def _alias_and_history(registry):
    return registry.read_alias("digits", "production").body, registry.alias_history("digits", "production")


def corrupt_same_size(s3, version):
    key = model_key("digits", version)
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=data[:-10] + b"0123456789")


@pytest.mark.parametrize("change", ["canary", "promote"])
def test_a_version_whose_model_no_longer_matches_its_sha256_cannot_be_named(registry, s3, two_versions, change):
    _, second = two_versions
    corrupt_same_size(s3, second)  # the manifest still verifies; the object behind it does not
    before = _alias_and_history(registry)
    with pytest.raises(VersionCorrupt) as refused:
        if change == "canary":
            registry.set_canary("digits", "production", second, 0.5, actor="ana", reason="")
        else:
            registry.promote("digits", "production", second, actor="ana", reason="")
    assert (refused.value.status, refused.value.code) == (409, "version_corrupt")
    assert refused.value.details["version"] == second
    assert "sha256" in refused.value.details["problems"][0]
    assert _alias_and_history(registry) == before  # nothing recorded


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("truncated", "bytes, the manifest says"),
        ("longer", "bytes, the manifest says"),
        ("missing", "missing"),
        ("unloadable", "cannot load"),
        ("other_schema", "inputs"),
    ],
)
def test_every_way_a_version_cannot_serve_keeps_it_from_an_alias(registry, s3, two_versions, damage, problem):
    _, second = two_versions
    key, mkey = model_key("digits", second), manifest_key("digits", second)
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=mkey)["Body"].read())
    if damage == "truncated":
        s3.put_object(Bucket=BUCKET, Key=key, Body=data[:100])
    elif damage == "longer":
        s3.put_object(Bucket=BUCKET, Key=key, Body=data + b"\0" * 100)
    elif damage == "missing":
        s3.delete_object(Bucket=BUCKET, Key=key)
    else:  # written behind the registry's back with a matching hash: only loading it shows the problem
        if damage == "unloadable":
            data = b"\x08\x07" + b"not a graph" * 30
        else:
            manifest["inputs"][0]["name"] = "pixels"
        manifest["artifact"] = {
            "file": "model.onnx",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
        }
        s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        s3.put_object(Bucket=BUCKET, Key=mkey, Body=json.dumps(manifest))
    with pytest.raises(VersionCorrupt) as refused:
        registry.promote("digits", "production", second, actor="ana", reason="")
    assert any(problem in line for line in refused.value.details["problems"]), refused.value.details
    assert registry.resolve("digits") == two_versions[0]


def test_the_model_is_checked_in_parts_as_it_streams(registry, s3, two_versions, monkeypatch, digits_onnx):
    import maas_core.shared.aws as aws_module

    _, second = two_versions
    monkeypatch.setattr(aws_module, "MODEL_PART_BYTES", 97)  # the digits model is ~3 KB: about 30 ranged GETs
    ranges = []
    real_get = registry.s3.get_object

    def get_object(**kwargs):
        if kwargs["Key"] == model_key("digits", second):
            ranges.append(kwargs.get("Range"))
        return real_get(**kwargs)

    monkeypatch.setattr(registry.s3, "get_object", get_object)
    registry.promote("digits", "production", second, actor="ana", reason="")
    assert registry.resolve("digits") == second
    # Promote verifies the bytes part by part, never the whole body in one GET.
    assert len(ranges) == -(-len(digits_onnx) // 97) and None not in ranges


def test_a_rollback_to_a_corrupt_version_is_refused(registry, s3, two_versions):
    first, second = two_versions
    registry.promote("digits", "production", second, actor="ana", reason="")
    corrupt_same_size(s3, first)
    with pytest.raises(VersionCorrupt):
        registry.rollback("digits", "production", actor="ana", reason="")
    assert registry.resolve("digits") == second


def test_ending_or_reweighting_a_canary_downloads_no_model(registry, s3, two_versions, monkeypatch):
    """The canary guard must end a canary even when a model object is damaged, and without waiting on it."""
    first, second = two_versions
    registry.set_canary("digits", "production", second, 0.1, actor="ana", reason="")
    corrupt_same_size(s3, first)
    corrupt_same_size(s3, second)
    monkeypatch.setattr(registry, "verify_version", lambda *a: pytest.fail("a model was downloaded"))
    assert registry.set_canary("digits", "production", second, 0.3, actor="ana", reason="").canary_weight == 0.3
    assert registry.set_canary("digits", "production", None, actor="guard", reason="alarm").canary_version is None


# -- an alias object that cannot be read ---------------------------------------------------------
ALIAS_KEY = "models/digits/aliases/production.json"


def break_alias(s3) -> str:
    return s3.put_object(Bucket=BUCKET, Key=ALIAS_KEY, Body=b'{"version": "20991231T0')["ETag"]


def test_a_version_given_replaces_an_unreadable_alias_and_the_history_says_what_was_there(registry, s3, two_versions):
    _, second = two_versions
    etag = break_alias(s3)
    with pytest.raises(ModelIntegrityError):
        registry.read_alias("digits", "production")
    record = registry.promote("digits", "production", second, actor="ana", reason="repair")
    assert registry.resolve("digits") == second and record.body["previous_version"] is None
    last = registry.alias_history("digits", "production")[-1]
    assert (last["from"], last["version"], last["updated_by"], last["reason"]) == (None, second, "ana", "repair")
    assert last["replaced_unreadable"]["etag"] == etag and "unreadable" in last["replaced_unreadable"]["note"]


def test_changes_that_keep_part_of_an_unreadable_alias_are_a_409_naming_the_fix(registry, s3, two_versions):
    _, second = two_versions
    break_alias(s3)
    for change in (
        lambda: registry.set_canary("digits", "production", second, 0.1, actor="ana", reason=""),
        lambda: registry.rollback("digits", "production", actor="ana", reason=""),
    ):
        with pytest.raises(AliasUnreadable) as refused:
            change()
        assert (refused.value.status, refused.value.code) == (409, "alias_unreadable")
        assert "give a version" in refused.value.message
    with pytest.raises(AliasConflict):  # the repair is still a compare-and-swap
        registry.promote("digits", "production", second, actor="ana", reason="", if_match='"0123"')


def test_a_warm_cache_keeps_its_last_good_alias_while_the_alias_is_unreadable(
    registry, s3, two_versions, monkeypatch, caplog
):
    import maas_core.shared.model_cache as model_cache

    first, second = two_versions
    clock = [1000.0]
    monkeypatch.setattr(model_cache.time, "monotonic", lambda: clock[0])
    model_cache.metrics.clear_metrics()
    cache = ModelCache(BUCKET, alias_ttl_seconds=5, registry=registry)
    assert cache.get("digits").version == first
    break_alias(s3)
    for _ in range(3):  # three TTLs, ten requests each
        clock[0] += 6
        for _ in range(10):
            assert cache.get("digits").version == first
    warnings = [r for r in caplog.records if "last good resolution" in r.getMessage()]
    assert len(warnings) == 3 and all(r.code == "model_integrity_error" for r in warnings)  # once per TTL
    assert model_cache.metrics.metric_set["AliasKeptStale"]["Value"] == [1.0, 1.0, 1.0]
    registry.promote("digits", "production", second, actor="ana", reason="repair")
    clock[0] += 6
    assert cache.get("digits").version == second  # the repaired alias reaches it at the next check
    with pytest.raises(ModelIntegrityError):  # a cold container has no last good resolution: a 503
        break_alias(s3)
        ModelCache(BUCKET, registry=registry).get("digits")
