import os

import numpy as np
import pytest

from shared.errors import ModelIntegrityError, RegistryUnavailable
from shared.model_cache import ModelCache, lambda_vcpus
from shared.registry import Registry, model_key

BUCKET = os.environ["MODEL_BUCKET"]


def test_nothing_is_downloaded_until_the_first_request():
    # No S3 exists here at all: constructing the cache must not touch it.
    cache = ModelCache(bucket="no-such-bucket-anywhere")
    assert cache.loaded() == []


def test_one_session_per_version_reused_across_requests(registry, published):
    cache = ModelCache(BUCKET, registry=registry)
    first = cache.get("digits")
    again = cache.get("digits", published["version"])
    assert first is again
    assert first.session is again.session
    x = np.zeros((1, 8, 8, 1), dtype=np.float32)
    assert first.session.run(None, {"image": x})[0].shape == (1, 10)


def test_a_tampered_model_is_refused_at_load(registry, s3, published):
    key = model_key("digits", published["version"])
    data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=data[:-10] + b"0123456789")  # same size, other bytes
    with pytest.raises(ModelIntegrityError) as err:
        ModelCache(BUCKET, registry=registry).get("digits")
    assert err.value.status == 503


def test_promote_reaches_a_warm_cache_after_the_ttl(registry, published, digits_onnx, make_manifest):
    cache = ModelCache(BUCKET, alias_ttl_seconds=0, registry=registry)
    assert cache.get("digits").version == published["version"]
    second = registry.publish("digits", digits_onnx, make_manifest(), version="20991231T000000Z-0000000c")
    etag = registry.read_alias("digits", "production").etag
    registry.set_alias("digits", "production", second["version"], expected_etag=etag)
    assert cache.get("digits").version == second["version"]


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


def test_the_optimised_graph_is_cached_in_tmp_and_reused(registry, published, tmp_path):
    first = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path)).get("digits")
    cached = tmp_path / f"{published['artifact']['sha256']}.basic.onnx"
    assert cached.exists() and cached.stat().st_size > 0
    again = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path)).get("digits")  # a new session, same /tmp
    x = np.random.default_rng(0).uniform(0, 16, (4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(
        again.session.run(None, {"image": x})[0], first.session.run(None, {"image": x})[0], atol=1e-6
    )


def test_a_damaged_optimised_file_is_rebuilt_from_the_verified_model(registry, published, tmp_path):
    (tmp_path / f"{published['artifact']['sha256']}.basic.onnx").write_bytes(b"not an onnx graph")
    model = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path)).get("digits")
    assert model.session.run(None, {"image": np.zeros((1, 8, 8, 1), np.float32)})[0].shape == (1, 10)
