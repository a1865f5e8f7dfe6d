import os
import stat

import numpy as np
import onnxruntime
import pytest

from maas_core.shared.errors import ModelIntegrityError, RegistryUnavailable
from maas_core.shared.model_cache import ModelCache, lambda_vcpus
from maas_core.shared.registry import Registry, model_key

BUCKET = os.environ["MODEL_BUCKET"]


def test_nothing_is_downloaded_until_the_first_request():
    # No S3 exists here at all: constructing the cache must not touch it.
    cache = ModelCache(bucket="no-such-bucket-anywhere")
    assert cache.loaded() == []


def test_one_session_per_version_reused_across_requests(registry, published):
    cache = ModelCache(BUCKET, registry=registry)
    first = cache.get("digits")
    again = cache.get("digits", published.version)
    assert first is again
    assert first.session is again.session
    x = np.zeros((1, 8, 8, 1), dtype=np.float32)
    assert first.session.run(None, {"image": x})[0].shape == (1, 10)


def test_a_tampered_model_is_refused_at_load(registry, s3, published):
    key = model_key("digits", published.version)
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=data[:-10] + b"0123456789")  # same size, other bytes
    with pytest.raises(ModelIntegrityError) as err:
        ModelCache(BUCKET, registry=registry).get("digits")
    assert err.value.status == 503


def test_promote_reaches_a_warm_cache_after_the_ttl(registry, published, digits_onnx, make_manifest):
    cache = ModelCache(BUCKET, alias_ttl_seconds=0, registry=registry)
    assert cache.get("digits").version == published.version
    second = registry.publish("digits", digits_onnx, make_manifest(), version="20991231T000000Z-0000000c")
    etag = registry.read_alias("digits", "production").etag
    registry.set_alias("digits", "production", second.version, expected_etag=etag)
    assert cache.get("digits").version == second.version


def test_keeps_serving_what_it_holds_when_s3_goes_away(registry, s3, published):
    cache = ModelCache(BUCKET, alias_ttl_seconds=0, registry=registry)
    held = cache.get("digits")
    for obj in s3.list_objects_v2(Bucket=BUCKET)["Contents"]:
        s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
    s3.delete_bucket(Bucket=BUCKET)  # every S3 call now fails
    assert cache.get("digits") is held
    with pytest.raises(RegistryUnavailable):
        ModelCache(BUCKET, registry=Registry(BUCKET, s3)).get("digits")


@pytest.mark.parametrize(("memory", "threads"), [(128, 1), (1769, 1), (1770, 2), (3008, 2), (10240, 6)])
def test_threads_follow_lambda_memory(memory, threads):
    assert lambda_vcpus(memory) == threads


def cache_folder(tmp_path):
    """Where a process of this owner keeps verified model files when OPTIMIZED_MODEL_DIR is tmp_path/opt."""
    return tmp_path / f"opt-{os.getuid()}"


def test_the_verified_file_is_kept_in_a_private_folder_and_served_fully_optimised(registry, published, tmp_path):
    model = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("digits")
    folder = cache_folder(tmp_path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
    # The verified model alone: no graph saved at the basic level (it served the digits CNN up to 10x slower).
    assert sorted(p.name for p in folder.iterdir()) == [f"{published.artifact.sha256}.onnx"]
    options = model.session.get_session_options()
    assert options.graph_optimization_level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize("unsafe", ["world_writable", "group_writable", "symlink"])
def test_a_cache_folder_others_could_write_is_not_used(registry, published, tmp_path, caplog, unsafe):
    folder = cache_folder(tmp_path)
    if unsafe == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    else:
        folder.mkdir()
        folder.chmod(0o777 if unsafe == "world_writable" else 0o770)
    model = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("digits")
    assert model.session.run(None, {"image": np.zeros((1, 8, 8, 1), np.float32)})[0].shape == (1, 10)
    assert list(folder.iterdir()) == []  # nothing written to it, nothing read from it
    assert any("not private" in r.getMessage() for r in caplog.records)


def test_no_folder_at_all_still_loads(registry, published, tmp_path):
    (tmp_path / "full").write_text("a file where the folder would go")
    model = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "full" / "opt")).get("digits")
    assert model.session.run(None, {"image": np.zeros((1, 8, 8, 1), np.float32)})[0].shape == (1, 10)


def test_a_load_that_fails_leaves_the_collector_as_it_found_it(registry, published):
    import gc

    from maas_core.shared.errors import MaasError

    cache = ModelCache(BUCKET, registry=registry)
    with pytest.raises(MaasError):
        cache.get("no-such-model")
    assert gc.isenabled()
    gc.disable()
    try:
        cache.get("digits")
        assert not gc.isenabled()  # the caller's pause (INIT's) is the caller's to end
    finally:
        gc.enable()
