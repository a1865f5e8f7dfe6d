import json
import os
import stat

import numpy as np
import pytest

from maas_core.shared.errors import ModelIntegrityError, RegistryUnavailable
from maas_core.shared.model_cache import ModelCache, OptimizedGraph, lambda_vcpus
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
    """Where a process of this owner keeps optimised graphs when OPTIMIZED_MODEL_DIR is tmp_path/opt."""
    return tmp_path / f"opt-{os.getuid()}"


def test_the_optimised_graph_is_cached_in_a_private_folder_and_reused(registry, published, tmp_path):
    first = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("digits")
    folder = cache_folder(tmp_path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
    cached = folder / f"{published.artifact.sha256}.basic.onnx"
    assert cached.exists() and cached.stat().st_size > 0
    stamp = json.loads(cached.with_suffix(".stamp.json").read_text())
    assert stamp["model_sha256"] == published.artifact.sha256
    loads = []
    real = OptimizedGraph.read
    again = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OptimizedGraph, "read", lambda self: loads.append(real(self)) or loads[-1])
        model = again.get("digits")  # a new session, same /tmp
    assert loads and loads[0] is not None  # it came from the cache
    x = np.random.default_rng(0).uniform(0, 16, (4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(
        model.session.run(None, {"image": x})[0], first.session.run(None, {"image": x})[0], atol=1e-6
    )


def test_a_damaged_optimised_file_is_rebuilt_from_the_verified_model(registry, published, tmp_path):
    ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("digits")
    (cache_folder(tmp_path) / f"{published.artifact.sha256}.basic.onnx").write_bytes(b"not an onnx graph")
    model = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("digits")
    assert model.session.run(None, {"image": np.zeros((1, 8, 8, 1), np.float32)})[0].shape == (1, 10)


def always_seven(model_bytes: bytes) -> bytes:
    """The digits graph with its weights zeroed and its bias on label 7: answers 7 to everything."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(model_bytes)
    for init in model.graph.initializer:
        if init.name in ("weights", "bias"):
            value = np.zeros_like(numpy_helper.to_array(init))
            if init.name == "bias":
                value[7] = 10.0
            init.CopyFrom(numpy_helper.from_array(value, init.name))
    return model.SerializeToString()


def test_another_models_graph_put_in_the_cache_is_ignored_and_the_right_answers_come(
    registry, published, tmp_path, make_manifest, digits_onnx
):
    """A graph is bound to the model's sha256: a valid graph of another model in its place is never served."""
    other = registry.publish("digits", always_seven(digits_onnx), make_manifest(), version="20991231T000000Z-0000000e")
    x = np.random.default_rng(1).uniform(0, 16, (32, 8, 8, 1)).astype(np.float32)
    uncached = ModelCache(BUCKET, registry=registry)
    right = uncached.get("digits", published.version).session.run(None, {"image": x})[0]
    wrong = uncached.get("digits", other.version).session.run(None, {"image": x})[0]
    assert set(wrong.argmax(axis=1)) == {7} and len(set(right.argmax(axis=1))) > 3
    warm = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt"))
    for version in (published.version, other.version):
        warm.get("digits", version)
    folder = cache_folder(tmp_path)
    target = folder / f"{published.artifact.sha256}.basic.onnx"
    target.write_bytes((folder / f"{other.artifact.sha256}.basic.onnx").read_bytes())
    fresh = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt"))
    answer = fresh.get("digits", published.version).session.run(None, {"image": x})[0]
    np.testing.assert_allclose(answer, right, atol=1e-5)
    assert OptimizedGraph(target, published.artifact.sha256).read() is not None  # rebuilt and re-stamped


def test_a_stamp_from_another_onnxruntime_is_not_trusted(registry, published, tmp_path, monkeypatch):
    import onnxruntime

    ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("digits")
    graph = OptimizedGraph(
        cache_folder(tmp_path) / f"{published.artifact.sha256}.basic.onnx", published.artifact.sha256
    )
    assert graph.read() is not None
    monkeypatch.setattr(onnxruntime, "__version__", "0.0.1")
    assert graph.read() is None


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
