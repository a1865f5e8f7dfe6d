"""Split models (ONNX external data): the weights in model.onnx.data beside the graph, published, downloaded,
verified, cached, evicted and sized as one model (ARCHITECTURE.md, "Registry layout", "Serving rules")."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

import maas_core.shared.aws as aws
from bench.loading import matmul_chain
from maas.models_cli import manifest_from_onnx, sizing
from maas.models_cli import publish as cli_publish
from maas_core.shared.errors import (
    ModelIntegrityError,
    ModelRejected,
    ModelTooLarge,
    ModelTooLargeHere,
    VersionCorrupt,
)
from maas_core.shared.layout import data_key, manifest_key, model_key, number_key
from maas_core.shared.manifest import Manifest
from maas_core.shared.model_cache import ModelCache
from maas_core.shared.model_files import ModelFiles, in_use
from maas_core.shared.sizing import Limits, Needs
from training.weights import SPLIT_THRESHOLD_BYTES, external_locations, publish_model_file, save_split, split_weights

BUCKET = os.environ["MODEL_BUCKET"]
SIDE = 128  # 64 KiB per initialiser


@pytest.fixture(scope="module")
def chain_onnx() -> bytes:
    return matmul_chain(8 * SIDE * SIDE * 4, side=SIDE)  # 8 initialisers: about 512 KiB inline


@pytest.fixture
def chain_file(tmp_path, chain_onnx):
    path = tmp_path / "in" / "chain.onnx"
    path.parent.mkdir()
    path.write_bytes(chain_onnx)
    return path


def draft_of(source):
    return manifest_from_onnx(source, None, "chain.onnx")


def publish_split(registry, chain_file, name="chain", **kwargs) -> Manifest:
    """The chain published as the publishers do when it is large (the threshold lowered for a small model)."""
    return publish_model_file(registry, name, chain_file, draft_of(chain_file), threshold_bytes=1, **kwargs)


def cache_dir(tmp_path):
    return tmp_path / f"opt-{os.getuid()}"


def keys(s3) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}


# -- splitting and publishing ---------------------------------------------------------------------
def test_split_weights_keeps_the_graph_small_and_names_one_file_beside_it(chain_onnx):
    graph, data = split_weights(chain_onnx)
    assert len(graph) < 4096 and len(data) >= 8 * SIDE * SIDE * 4
    assert external_locations(graph) == {"model.onnx.data"}
    assert external_locations(chain_onnx) == set()


def test_a_small_model_stays_inline(registry, s3, chain_file):
    assert chain_file.stat().st_size < SPLIT_THRESHOLD_BYTES
    published = publish_model_file(registry, "chain", chain_file, draft_of(chain_file))
    assert published.artifact.external_data is None
    assert keys(s3) >= {model_key("chain", published.version)}
    assert data_key("chain", published.version) not in keys(s3)


def test_a_model_of_a_few_mib_is_published_split(registry, s3, tmp_path):
    """The ladder's 10 MiB transformer was published inline (below 16 MiB then) and its cold request peaked
    above the goal of 1.5 x the file + 120 MiB (issue 17); from 1 MiB on a model is published split."""
    path = tmp_path / "chain.onnx"
    path.write_bytes(matmul_chain(4 * 2**20, side=512))  # 4 initialisers of 1 MiB
    published = publish_model_file(registry, "chain", path, draft_of(path))
    assert published.artifact.external_data is not None and published.artifact.size_bytes < 4096
    assert data_key("chain", published.version) in keys(s3)


def test_from_the_threshold_a_split_cold_load_peaks_lower_than_inline(tmp_path):
    """Why the threshold is where it is (training/weights.py): at 4 MiB an inline model's cold load adds ~18 MiB
    of peak memory, split ~14 MiB (measured in a fresh process each, as bench.loading does). Inline peaks vary
    by ~2 MiB between runs (15.8-17.7 MiB on the same file); split must save at least 1 MiB of the 4."""
    from bench.loading import load_once

    inline = tmp_path / "chain.onnx"
    inline.write_bytes(matmul_chain(4 * SPLIT_THRESHOLD_BYTES, side=512))
    (tmp_path / "split").mkdir()
    split = save_split(inline, tmp_path / "split")
    inline_peak = load_once("path", inline, 512)["rss_mib"]
    split_peak = load_once("external", split, 512)["rss_mib"]
    assert split_peak < inline_peak - 1, (split_peak, inline_peak)


def test_a_split_model_is_published_weights_first_and_manifest_last(registry, s3, chain_file, monkeypatch):
    order: list[str] = []
    real_put = registry.s3.put_object
    monkeypatch.setattr(registry.s3, "put_object", lambda **kw: order.append(kw["Key"]) or real_put(**kw))
    published = publish_split(registry, chain_file)
    version = published.version
    assert order[:4] == [
        data_key("chain", version),
        model_key("chain", version),
        number_key("chain", 1),  # the version's number, taken just before the manifest records it
        manifest_key("chain", version),
    ]
    data = s3.get_object(Bucket=BUCKET, Key=data_key("chain", version))["Body"].read()
    graph = s3.get_object(Bucket=BUCKET, Key=model_key("chain", version))["Body"].read()
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_key("chain", version))["Body"].read())
    assert stored["artifact"]["external_data"]["file"] == "model.onnx.data"
    assert stored["artifact"]["external_data"]["size_bytes"] == len(data)
    assert stored["artifact"]["size_bytes"] == len(graph) < 4096
    assert published.artifact.total_bytes == len(graph) + len(data)


def test_a_graph_whose_weights_are_not_given_is_refused_and_nothing_is_written(registry, s3, chain_onnx):
    graph, _ = split_weights(chain_onnx)
    with pytest.raises(ModelRejected):
        registry.publish("chain", graph, draft_of(chain_onnx))
    assert keys(s3) == set()


# -- maas models publish of a model split already --------------------------------------------------
def test_maas_models_publish_uploads_a_split_model_with_its_weights(registry, s3, chain_onnx, tmp_path):
    folder = tmp_path / "split"
    folder.mkdir()
    graph = save_split(chain_onnx, folder)
    published = cli_publish(registry, "chain", graph, None)
    external = published.artifact.external_data
    assert external is not None and external.size_bytes == (folder / "model.onnx.data").stat().st_size
    assert data_key("chain", published.version) in keys(s3)
    # What publish and describe say the model needs counts the graph and its weights, at the split slope.
    needs = sizing(published.artifact, Limits(memory_mb=1024, storage_mb=1024))["needs"]
    assert needs == Needs.of(published.artifact.size_bytes, external.size_bytes).to_json()


def test_maas_models_publish_refuses_weights_in_any_other_file(registry, s3, chain_onnx, tmp_path):
    import onnx

    folder = tmp_path / "elsewhere"
    folder.mkdir()
    model = onnx.load_from_string(chain_onnx)
    onnx.save_model(model, str(folder / "m.onnx"), save_as_external_data=True, location="weights.bin")
    with pytest.raises(ModelRejected) as refused:
        cli_publish(registry, "chain", folder / "m.onnx", None)
    assert "model.onnx.data" in refused.value.message
    assert refused.value.details["received"] == ["weights.bin"]
    assert keys(s3) == set()


# -- serving: downloaded side by side, the same answers as the inline form -----------------------------
def test_a_split_model_is_cached_side_by_side_and_answers_as_the_inline_one(
    registry, chain_onnx, chain_file, tmp_path, monkeypatch
):
    monkeypatch.setattr(aws, "MODEL_PART_BYTES", 64 * 2**10)  # the weights come in several ranged GETs
    split = publish_split(registry, chain_file, name="split")
    registry.publish("inline", chain_onnx, draft_of(chain_onnx))
    cache = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt"))
    x = np.random.default_rng(1).standard_normal((3, SIDE)).astype(np.float32)
    split_y = cache.get("split").session.run(None, {"x": x})[0]
    inline_y = cache.get("inline").session.run(None, {"x": x})[0]
    np.testing.assert_array_equal(split_y, inline_y)
    entry = cache_dir(tmp_path) / f"{split.artifact.sha256}-{split.artifact.external_data.sha256}"
    assert sorted(p.name for p in entry.iterdir()) == ["model.onnx", "model.onnx.data"]


def test_two_trainings_of_one_architecture_share_a_graph_but_each_is_served_its_own_weights(
    registry, chain_onnx, tmp_path
):
    import onnx
    from onnx import numpy_helper

    retrained = onnx.load_from_string(chain_onnx)
    first = retrained.graph.initializer[0]
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) * 2, first.name))
    files = {}
    for name, model in (("first", chain_onnx), ("second", retrained.SerializeToString())):
        files[name] = tmp_path / name / "chain.onnx"
        files[name].parent.mkdir()
        files[name].write_bytes(model)
    one, two = (publish_split(registry, files[name], name=name) for name in ("first", "second"))
    assert one.artifact.sha256 == two.artifact.sha256  # the same graph, byte for byte
    assert one.version[-8:] != two.version[-8:]  # the version's hash is the weights'
    cache = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt"))
    x = np.ones((1, SIDE), np.float32)
    y1, y2 = (cache.get(name).session.run(None, {"x": x})[0] for name in ("first", "second"))
    np.testing.assert_allclose(y2, 2 * y1, rtol=1e-5)
    assert len(list(cache_dir(tmp_path).iterdir())) == 2  # one folder each


def test_a_split_model_on_disk_loads_again_without_a_download(registry, chain_file, tmp_path, monkeypatch):
    publish_split(registry, chain_file)
    ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("chain")
    gets: list[str] = []
    real = registry.s3.get_object
    monkeypatch.setattr(registry.s3, "get_object", lambda **kw: gets.append(kw["Key"]) or real(**kw))
    again = ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("chain")
    assert not [k for k in gets if k.endswith((".onnx", ".data"))]
    assert again.session.run(None, {"x": np.ones((1, SIDE), np.float32)})[0].shape == (1, SIDE)


def test_corrupted_weights_are_refused_and_nothing_is_kept(registry, s3, chain_file, tmp_path):
    published = publish_split(registry, chain_file)
    key = data_key("chain", published.version)
    corrupt = bytearray(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    corrupt[len(corrupt) // 2] ^= 0xFF  # same size, one byte differs
    s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(corrupt))
    with pytest.raises(ModelIntegrityError) as refused:
        ModelCache(BUCKET, registry=registry, optimized_dir=str(tmp_path / "opt")).get("chain")
    assert refused.value.status == 503 and refused.value.code == "model_integrity_error"
    assert refused.value.details["file"] == "model.onnx.data"
    assert refused.value.details["problems"][0].startswith("model.onnx.data has sha256")
    assert list(cache_dir(tmp_path).iterdir()) == []  # neither file, no part folder


def test_truncated_weights_are_refused_before_they_are_read(registry, s3, chain_file, tmp_path):
    published = publish_split(registry, chain_file)
    s3.put_object(Bucket=BUCKET, Key=data_key("chain", published.version), Body=b"short")
    target = tmp_path / "model.onnx"
    with pytest.raises(ModelIntegrityError) as refused:
        registry.download_model("chain", published.version, published, target)
    size = published.artifact.external_data.size_bytes
    assert refused.value.details["problems"] == [f"model.onnx.data has 5 bytes, the manifest says {size}"]
    assert not target.exists() and not target.with_name("model.onnx.data").exists()


def test_an_alias_refuses_a_split_version_whose_weights_differ(registry, s3, chain_file):
    published = publish_split(registry, chain_file, alias_on_first_publish=None)
    registry.promote("chain", "production", published.version, actor="t", reason="split model verifies")
    s3.delete_object(Bucket=BUCKET, Key=data_key("chain", published.version))
    with pytest.raises(VersionCorrupt) as refused:
        registry.promote("chain", "staging", published.version, actor="t", reason="weights gone")
    assert refused.value.details["problems"] == ["model.onnx.data is missing"]


def test_deleting_a_split_version_deletes_its_weights(registry, s3, chain_file):
    published = publish_split(registry, chain_file, alias_on_first_publish=None)
    registry.delete_version("chain", published.version)
    assert keys(s3) == {number_key("chain", 1)}  # its number stays taken, never given to another version


# -- the /tmp cache counts and evicts a split model's folder as one entry -------------------------------
def cached_split(folder, sha: str, size: int, age_s: float):
    entry = folder / sha
    entry.mkdir()
    (entry / "model.onnx").write_bytes(b"\0" * 10)
    (entry / "model.onnx.data").write_bytes(b"\0" * size)
    os.utime(entry, (time.time() - age_s, time.time() - age_s))
    return entry


def test_eviction_counts_and_removes_both_files_of_a_split_model(tmp_path):
    old = cached_split(tmp_path, "a" * 64, 590, 60)
    newer = tmp_path / f"{'b' * 64}.onnx"
    newer.write_bytes(b"\0" * 300)
    files = ModelFiles(tmp_path, budget_bytes=1000)
    files.make_room(100, "fits")  # 600 + 300 + 100: nothing goes
    assert old.exists()
    files.make_room(200, "next")  # 1100: the split model's folder, least recently used, goes whole
    assert not old.exists() and newer.exists()


def test_a_split_model_in_use_is_never_evicted(tmp_path):
    held = cached_split(tmp_path, "a" * 64, 590, 60)
    with in_use("a" * 64), pytest.raises(ModelTooLargeHere) as refused:
        ModelFiles(tmp_path, budget_bytes=1000).make_room(500, "big")
    assert refused.value.details["in_use_bytes"] == 600
    assert sorted(p.name for p in held.iterdir()) == ["model.onnx", "model.onnx.data"]


# -- manifests and sizing --------------------------------------------------------------------------
def test_an_inline_manifest_has_no_external_data_and_round_trips(registry, chain_onnx):
    published = registry.publish("chain", chain_onnx, draft_of(chain_onnx))
    assert published.artifact.external_data is None
    assert "external_data" not in published.to_json()["artifact"]
    assert published.artifact.total_bytes == published.artifact.size_bytes == len(chain_onnx)
    assert Manifest.from_json(published.to_json()).to_json() == published.to_json()


def test_a_manifest_naming_another_weights_file_does_not_verify(registry, chain_file):
    stored = publish_split(registry, chain_file).to_json()
    stored["artifact"]["external_data"]["file"] = "../../secret"
    with pytest.raises(ModelIntegrityError) as refused:
        Manifest.from_json(stored)
    assert refused.value.details["problems"] == [
        "artifact.external_data.file: expected 'model.onnx.data', got '../../secret'"
    ]


def test_a_split_model_needs_the_measured_split_memory():
    mib = 2**20
    inline, split = Needs.of(400 * mib), Needs.of(1 * mib, 399 * mib)
    assert split.storage_mb == inline.storage_mb == 400 + 64
    assert split.memory_mb == 128 + 15 + 420 < inline.memory_mb == 128 + 25 + 680


def test_a_split_model_that_fits_is_published_and_one_that_does_not_is_refused(registry, chain_file):
    size = chain_file.stat().st_size  # the limits' memory a little over what the split chain needs
    limits = Limits(memory_mb=Needs.of(1, size).memory_mb, storage_mb=1024)
    assert publish_split(registry, chain_file, limits=limits).artifact.external_data is not None
    with pytest.raises(ModelTooLarge) as refused:
        publish_split(registry, chain_file, limits=Limits(memory_mb=128, storage_mb=1024))
    assert refused.value.status == 422 and refused.value.code == "model_too_large"


def test_the_training_job_publishes_a_model_at_the_threshold_split(registry, s3, tmp_path):
    from argparse import Namespace

    from training.job import _publish

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(matmul_chain(SPLIT_THRESHOLD_BYTES, side=512))  # 1 initialiser of 1 MiB
    args = Namespace(
        registry_bucket=BUCKET,
        model_name="chain",
        output_data_dir=str(tmp_path / "output"),
        serving_memory_mb=0,  # the job's defaults: no serving limits given
        serving_storage_mb=0,
    )
    published = _publish(args, model_dir, draft_of(model_dir / "model.onnx"))
    assert published is not None and published.artifact.external_data is not None
    assert keys(s3) == {
        data_key("chain", published.version),
        model_key("chain", published.version),
        manifest_key("chain", published.version),
        number_key("chain", 1),
    }  # no alias: the job only adds versions


def test_bench_loading_measures_the_split_form(capsys):
    from bench.loading import main

    assert main(["--sizes", "4,8", "--rounds", "1", "--modes", "path,external"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(" external ") == 2  # one row per size
    assert "external mode, every round: peak RSS over baseline = " in printed


def test_bench_loading_measures_models_under_4_mib_with_smaller_weights(capsys):
    """Where the split threshold is chosen (1 MiB): 4 MiB initialisers could not make a 1 or 2 MiB model."""
    from bench.loading import main

    assert main(["--sizes", "1,2", "--rounds", "1", "--modes", "external", "--side", "512"]) == 0
    sizes = [line.split()[0] for line in capsys.readouterr().out.splitlines() if " external " in line]
    assert sizes == ["1.0", "2.0"]


def test_a_function_a_split_model_was_published_for_serves_it(registry, chain_file, monkeypatch):
    """The request's memory check sizes a split model as publish did: not at the inline slope, which would
    refuse with a 507 a model publish accepted for this very function."""
    manifest = publish_split(registry, chain_file)
    artifact = manifest.artifact
    assert artifact.external_data is not None
    fits = Needs.of(artifact.size_bytes, artifact.external_data.size_bytes).memory_mb
    assert fits < Needs.of(artifact.total_bytes).memory_mb  # what the inline slope would ask
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", str(fits))
    assert ModelCache(BUCKET, registry=registry).get("chain").version == manifest.version
