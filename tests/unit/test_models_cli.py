"""`maas models`: bring-your-own publish, promote, rollback and history on a moto registry."""

from pathlib import Path

import pytest
from tests_support import build_two_input_onnx

from maas.models_cli import manifest_from_onnx, publish
from shared.errors import AliasConflict, VersionNotFound
from shared.inference import feeds_from_body, run
from shared.model_cache import ModelCache


def test_a_model_trained_elsewhere_is_published_with_its_schema_read_from_the_graph(registry, tmp_path):
    path = tmp_path / "blend.onnx"
    path.write_bytes(build_two_input_onnx())
    manifest = publish(registry, "blend", path, labels=None)
    assert manifest["task"] == "regression" and "labels" not in manifest
    assert manifest["inputs"] == [
        {"name": "features", "dtype": "float32", "shape": [None, 3]},
        {"name": "extra", "dtype": "float32", "shape": [None, 2]},
    ]
    assert manifest["outputs"] == [{"name": "score", "dtype": "float32", "shape": [None, 1]}]
    model = ModelCache("unused", registry=registry).get("blend")  # served like any other version
    out = run(model, feeds_from_body({"instances": [{"features": [1, 2, 3], "extra": [4, 5]}]}, model, 4))
    assert out["score"].tolist() == [[pytest.approx(1 + 4 + 9 - 4 + 2.5 + 0.25)]]


def test_a_file_onnxruntime_cannot_load_is_refused(registry, tmp_path):
    with pytest.raises(Exception):  # onnx.checker or onnxruntime refuses it; nothing is published
        manifest_from_onnx(b"not a model", None, "junk.onnx")
    assert registry.list_models() == []


def test_promote_rollback_and_history(registry, published, digits_onnx, make_manifest):
    first = published["version"]
    second = registry.publish("digits", digits_onnx, make_manifest(), version="20991231T000000Z-0000000e")["version"]
    registry.promote("digits", "production", second, actor="ana", reason="better on night shifts")
    assert registry.resolve("digits") == second
    registry.rollback("digits", "production", actor="bo", reason="latency regression")
    assert registry.resolve("digits") == first
    history = registry.alias_history("digits", "production")
    assert [(h["previous_version"], h["version"], h["updated_by"], h["reason"]) for h in history] == [
        (None, first, "maas", "first publish"),
        (first, second, "ana", "better on night shifts"),
        (second, first, "bo", "latency regression"),
    ]
    with pytest.raises(VersionNotFound):
        registry.promote("digits", "production", "20991231T000000Z-deadbeef", actor="ana", reason="")
    registry.promote("digits", "canary", second, actor="ana", reason="try it")  # a new alias
    with pytest.raises(AliasConflict):
        registry.rollback("digits", "canary", actor="ana", reason="")  # nothing before it
    assert registry.list_aliases("digits") == {"production": first, "canary": second}


def test_the_cli_publishes_and_lists(registry, tmp_path, monkeypatch):
    import argparse

    from maas.models_cli import run as run_command

    path = Path(tmp_path / "blend.onnx")
    path.write_bytes(build_two_input_onnx())
    args = argparse.Namespace(models_command="publish", name="blend", onnx=str(path), labels=None)
    version = run_command(registry, args)["version"]
    listed = run_command(registry, argparse.Namespace(models_command="list"))
    assert listed == [{"name": "blend", "aliases": {"production": version}}]
