"""Loading real-size models: parallel ranged GETs hashed as they arrive, the /tmp file cache and its eviction,
and what a model needs of the function (memory, storage) at publish and at request time."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import maas_core.shared.aws as aws
from bench.loading import matmul_chain
from maas.models_cli import manifest_from_onnx
from maas_core.shared.errors import ModelIntegrityError, ModelTooLarge, ModelTooLargeHere
from maas_core.shared.model_cache import ModelCache
from maas_core.shared.model_files import ModelFiles, in_use
from maas_core.shared.registry import model_key
from maas_core.shared.sizing import Limits, Needs

BUCKET = os.environ["MODEL_BUCKET"]
SIDE = 128  # 64 KiB per initialiser


@pytest.fixture(scope="module")
def chain_onnx() -> bytes:
    return matmul_chain(8 * SIDE * SIDE * 4, side=SIDE)  # 8 initialisers: about 512 KiB


def publish_chain(registry, data: bytes, name: str = "chain", **kwargs):
    return registry.publish(name, data, manifest_from_onnx(data, None, "chain.onnx"), **kwargs)


@pytest.fixture
def small_parts(monkeypatch):
    monkeypatch.setattr(aws, "MODEL_PART_BYTES", 64 * 2**10)  # the chain model comes in 8 or 9 ranged GETs


def recorded_gets(registry, monkeypatch) -> list[dict]:
    """Every GetObject's arguments, with the thread that sent it."""
    calls: list[dict] = []
    real = registry.s3.get_object
    monkeypatch.setattr(
        registry.s3, "get_object", lambda **kw: calls.append({**kw, "thread": threading.get_ident()}) or real(**kw)
    )
    return calls


def test_a_model_arrives_in_parallel_ranged_gets_and_serves(registry, chain_onnx, small_parts, monkeypatch, tmp_path):
    published = publish_chain(registry, chain_onnx)
    gets = recorded_gets(registry, monkeypatch)
    model = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("chain")
    key = model_key("chain", published.version)
    parts = [g for g in gets if g["Key"] == key]
    assert len(parts) >= 8 and all(g["Range"].startswith("bytes=") for g in parts)
    # Every part after the first is asked for the first part's ETag: an object replaced midway is not mixed.
    assert len({g.get("IfMatch") for g in parts[1:]}) == 1
    assert len({g["thread"] for g in parts}) > 1  # several at once
    x = np.ones((1, SIDE), np.float32)
    assert model.session.run(None, {"x": x})[0].shape == (1, SIDE)
    kept = tmp_path / f"opt-{os.getuid()}" / f"{published.artifact.sha256}.onnx"
    assert kept.read_bytes() == chain_onnx  # the verified file stays in /tmp, named by its sha256


def test_the_hash_is_taken_as_the_parts_are_written_not_by_reading_the_file_again(
    registry, chain_onnx, small_parts, monkeypatch, tmp_path
):
    import maas_core.shared.registry as registry_module

    published = publish_chain(registry, chain_onnx)
    writes: list[int] = []
    real_write = registry_module._HashingSink.write
    monkeypatch.setattr(
        registry_module._HashingSink, "write", lambda self, data: writes.append(len(data)) or real_write(self, data)
    )
    opened: list[str] = []
    real_open = type(tmp_path).open

    def open_spy(path, mode="r", *args, **kwargs):
        opened.append(mode)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(type(tmp_path), "open", open_spy)
    registry.download_model("chain", published.version, published, tmp_path / "model.onnx")
    assert sum(writes) == len(chain_onnx) and len(writes) > 1
    assert opened == ["wb"]  # written once, never opened to be read for the hash
    assert (tmp_path / "model.onnx").read_bytes() == chain_onnx


def test_a_corrupted_byte_is_refused_and_nothing_is_kept(registry, s3, chain_onnx, small_parts, tmp_path):
    published = publish_chain(registry, chain_onnx)
    corrupt = bytearray(chain_onnx)
    corrupt[len(corrupt) // 2] ^= 0xFF  # same size, one byte differs, in a middle part
    s3.put_object(Bucket=BUCKET, Key=model_key("chain", published.version), Body=bytes(corrupt))
    with pytest.raises(ModelIntegrityError) as refused:
        ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("chain")
    assert refused.value.status == 503 and refused.value.code == "model_integrity_error"
    assert "sha256" in refused.value.details["problems"][0]
    assert list((tmp_path / f"opt-{os.getuid()}").iterdir()) == []  # no part file, no model file


def test_a_truncated_object_is_refused_before_any_byte_is_read(registry, s3, chain_onnx, monkeypatch, tmp_path):
    published = publish_chain(registry, chain_onnx)
    s3.put_object(Bucket=BUCKET, Key=model_key("chain", published.version), Body=chain_onnx[:-1000])
    gets = recorded_gets(registry, monkeypatch)
    with pytest.raises(ModelIntegrityError) as refused:
        registry.download_model("chain", published.version, published, tmp_path / "model.onnx")
    assert refused.value.details["problems"] == [
        f"model.onnx has {len(chain_onnx) - 1000} bytes, the manifest says {len(chain_onnx)}"
    ]
    assert gets == [] and not (tmp_path / "model.onnx").exists()


def test_an_object_that_grows_after_its_size_was_read_is_refused(registry, s3, chain_onnx, monkeypatch, tmp_path):
    published = publish_chain(registry, chain_onnx)
    s3.put_object(Bucket=BUCKET, Key=model_key("chain", published.version), Body=chain_onnx + b"more")
    real_head = registry.s3.head_object
    # The HEAD still sees the published size: the object is replaced between the HEAD and the GET.
    monkeypatch.setattr(registry.s3, "head_object", lambda **kw: {**real_head(**kw), "ContentLength": len(chain_onnx)})
    with pytest.raises(ModelIntegrityError) as refused:
        registry.download_model("chain", published.version, published, tmp_path / "model.onnx")
    assert refused.value.details["problems"] == [
        f"model.onnx has more than the {len(chain_onnx)} bytes the manifest says"
    ]


def test_a_verified_file_on_disk_is_loaded_again_without_a_download(registry, chain_onnx, monkeypatch, tmp_path):
    publish_chain(registry, chain_onnx)
    ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("chain")
    gets = recorded_gets(registry, monkeypatch)
    again = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("chain")
    assert not [g for g in gets if g["Key"].endswith("model.onnx")]
    assert again.session.run(None, {"x": np.ones((2, SIDE), np.float32)})[0].shape == (2, SIDE)


# -- the /tmp cache: least recently used out first, never a file in use -----------------------------
def cached_file(folder, sha: str, size: int, age_s: float):
    path = folder / f"{sha}.onnx"
    path.write_bytes(b"\0" * size)
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_the_least_recently_used_file_goes_first(tmp_path):
    old, newer = cached_file(tmp_path, "a" * 64, 400, 60), cached_file(tmp_path, "b" * 64, 400, 10)
    ModelFiles(tmp_path, budget_bytes=1000).make_room(500, "next")
    assert not old.exists() and newer.exists()


def test_a_file_in_use_is_never_evicted(tmp_path):
    old, newer = cached_file(tmp_path, "a" * 64, 400, 60), cached_file(tmp_path, "b" * 64, 400, 10)
    with in_use("a" * 64):
        ModelFiles(tmp_path, budget_bytes=1000).make_room(500, "next")
    assert old.exists() and not newer.exists()


def test_a_model_that_cannot_fit_beside_files_in_use_is_refused_and_nothing_is_lost(tmp_path):
    held = cached_file(tmp_path, "a" * 64, 800, 60)
    with in_use("a" * 64), pytest.raises(ModelTooLargeHere) as refused:
        ModelFiles(tmp_path, budget_bytes=1000).make_room(500, "big")
    assert refused.value.status == 507 and refused.value.code == "model_too_large"
    assert refused.value.details == {"model": "big", "size_bytes": 500, "budget_bytes": 1000, "in_use_bytes": 800}
    assert held.exists()


def test_the_storage_budget_is_the_functions_ephemeral_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("EPHEMERAL_STORAGE_MB", "1024")
    assert ModelFiles(tmp_path).budget_bytes == (1024 - 64) * 2**20
    monkeypatch.delenv("EPHEMERAL_STORAGE_MB")
    stats = os.statvfs(tmp_path)
    assert ModelFiles(tmp_path).budget_bytes == (stats.f_frsize * stats.f_blocks // 2**20 - 64) * 2**20


# -- sizing -------------------------------------------------------------------------------------
def test_needs_grow_with_the_model_by_the_measured_constants():
    assert Needs.of(0) == Needs(memory_mb=153, storage_mb=64)
    assert Needs.of(100 * 2**20) == Needs(memory_mb=323, storage_mb=164)  # 128 + 25 + 1.7 x 100
    assert Needs.of(400 * 2**20) == Needs(memory_mb=833, storage_mb=464)
    assert Limits(1024, 512).refusal(Needs.of(400 * 2**20)) is None
    assert Limits(512, 512).refusal(Needs.of(400 * 2**20)) == "memory 833 MB (this function has 512 MB)"


def test_a_model_that_does_not_fit_the_function_is_refused_at_publish(registry, chain_onnx):
    with pytest.raises(ModelTooLarge) as refused:
        publish_chain(registry, chain_onnx, limits=Limits(memory_mb=128, storage_mb=512))
    error = refused.value
    assert error.status == 422 and error.code == "model_too_large"
    assert "needs memory 154 MB (this function has 128 MB)" in error.message
    assert error.details["needs"] == {"memory_mb": 154, "storage_mb": 65}
    assert error.details["limits"] == {"memory_mb": 128, "storage_mb": 512}
    assert registry.list_models() == []  # nothing written
    assert publish_chain(registry, chain_onnx, limits=Limits(memory_mb=1024, storage_mb=512)).name == "chain"


def test_a_request_for_a_model_too_large_for_this_function_is_507_and_the_held_models_keep_serving(
    registry, published, chain_onnx, monkeypatch
):
    cache = ModelCache(BUCKET, registry=registry)
    held = cache.get("digits")
    publish_chain(registry, chain_onnx)
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "153")  # digits needs 153 MB, the chain 154
    with pytest.raises(ModelTooLargeHere) as refused:
        cache.get("chain")
    assert refused.value.status == 507 and refused.value.code == "model_too_large"
    assert refused.value.details["limits"]["memory_mb"] == 153
    assert cache.get("digits") is held and [m["model"] for m in cache.loaded()] == ["digits"]


def test_a_broken_version_is_downloaded_once_not_on_every_request(registry, s3, published, monkeypatch):
    s3.put_object(Bucket=BUCKET, Key=model_key("digits", published.version), Body=b"tampered")
    cache = ModelCache(BUCKET, registry=registry, retry_after_seconds=60)
    downloads = []
    real = registry.download_model
    monkeypatch.setattr(registry, "download_model", lambda *a: downloads.append(a) or real(*a))
    for _ in range(3):
        with pytest.raises(ModelIntegrityError):
            cache.get("digits")
    assert len(downloads) == 1


def test_a_promote_checks_the_model_in_ranged_parts(registry, chain_onnx, small_parts, monkeypatch):
    publish_chain(registry, chain_onnx)
    second = publish_chain(registry, chain_onnx + b"", version="20991231T000000Z-0000000c")
    gets = recorded_gets(registry, monkeypatch)
    registry.promote("chain", "production", second.version, actor="ana", reason="")
    parts = [g for g in gets if g["Key"] == model_key("chain", second.version)]
    assert len(parts) >= 8 and all("Range" in g for g in parts)
    assert registry.resolve("chain") == second.version


def test_sessions_are_evicted_least_recently_used_first_to_make_room_for_a_cold_load(
    registry, published, chain_onnx, monkeypatch
):
    cache = ModelCache(BUCKET, registry=registry)
    cache.get("digits")
    publish_chain(registry, chain_onnx)
    # The chain fits this function (154 MB) but not beside what this test process already holds.
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "160")
    assert cache.get("chain").name == "chain"
    assert [m["model"] for m in cache.loaded()] == ["chain"]
