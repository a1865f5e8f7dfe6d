"""`maas models`: bring-your-own publish, promote, rollback and history on a moto registry."""

import json
from pathlib import Path

import numpy as np
import pytest

from maas.models_cli import manifest_from_onnx, publish
from maas_core.shared.errors import AliasConflict, ModelRejected, VersionInUse, VersionNotFound
from maas_core.shared.inference import feeds_from_body, run
from maas_core.shared.model_cache import ModelCache
from tests_support import build_two_input_onnx, event


def test_a_model_trained_elsewhere_is_published_with_its_schema_read_from_the_graph(registry, tmp_path):
    path = tmp_path / "blend.onnx"
    path.write_bytes(build_two_input_onnx())
    manifest = publish(registry, "blend", path, labels=None).to_json()
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
    with pytest.raises(SystemExit, match="not a valid ONNX model"):  # nothing is published
        manifest_from_onnx(b"not a model", None, "junk.onnx")
    assert registry.list_models() == []


def test_a_graph_with_a_tensor_type_maas_cannot_serve_is_refused_by_name(registry, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x, y = (helper.make_tensor_value_info(n, TensorProto.UINT16, [None, 2]) for n in "xy")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "u16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    with pytest.raises(ModelRejected) as err:  # the CLI prints its body and exits 1
        publish(registry, "u16", path, labels=None)
    assert err.value.details["received"] == "tensor(uint16)" and "'x'" in err.value.message
    assert registry.list_models() == []


def test_promote_rollback_and_history(registry, published, digits_onnx, make_manifest):
    first = published.version
    second = registry.publish("digits", digits_onnx, make_manifest(), version="20991231T000000Z-0000000e").version
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
    published = run_command(registry, args)
    version = published["version"]
    assert published["version_number"] == 1
    listed = run_command(registry, argparse.Namespace(models_command="list"))
    assert listed == [
        {"name": "blend", "aliases": {"production": version}, "versions": [{"version": version, "number": 1}]}
    ]


def wine_pipeline_onnx() -> tuple[bytes, np.ndarray, np.ndarray]:
    """A scikit-learn pipeline converted as its users convert it: skl2onnx, no ZipMap."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_wine(return_X_y=True)
    x = x.astype("float32")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x[::2], y[::2])
    onx = to_onnx(pipeline, x[:1], options={"zipmap": False}, target_opset=17)
    return onx.SerializeToString(), x[1::2], pipeline.predict(x[1::2])


def test_a_skl2onnx_pipeline_published_with_the_cli_answers_on_both_protocols(registry, api, tmp_path):
    from maas.cli import build_parser
    from maas.models_cli import run as run_command

    data, held_out, expected = wine_pipeline_onnx()
    path = tmp_path / "wine.onnx"
    path.write_bytes(data)
    args = build_parser().parse_args(
        ["models", "publish", "--name", "wine", "--onnx", str(path), "--labels", "class_0,class_1,class_2"]
    )
    version = run_command(registry, args)["version"]
    manifest = registry.read_manifest("wine", version).to_json()
    assert [o["name"] for o in manifest["outputs"]] == ["probabilities", "label"]
    assert manifest["inputs"] == [{"name": "X", "dtype": "float32", "shape": [None, 13]}]

    rows = held_out[:16].tolist()
    tf_serving = event(
        "predict_digits",
        path="/models/wine/predict",
        pathParameters={"name": "wine"},
        body=json.dumps({"instances": rows}),
    )
    status, body, _ = api(tf_serving)
    assert status == 200 and body["version"] == version
    assert [p["label"] for p in body["predictions"]] == [f"class_{k}" for k in expected[:16]]

    v2 = event(
        "v2_infer_digits",
        path="/v2/models/wine/infer",
        pathParameters={"name": "wine"},
        body=json.dumps({"inputs": [{"name": "X", "shape": [16, 13], "datatype": "FP32", "data": rows}]}),
    )
    status, body, _ = api(v2)
    assert status == 200 and body["model_version"] == version
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["data"] == expected[:16].tolist()
    assert outputs["probabilities"]["shape"] == [16, 3]


def test_canary_and_delete_from_the_command_line(registry, published, digits_onnx, make_manifest):
    from maas.cli import build_parser
    from maas.models_cli import run as run_command

    first = published.version
    second = registry.publish("digits", digits_onnx, make_manifest(), version="20991231T000000Z-0000000f").version

    def cli(*argv: str):
        return run_command(registry, build_parser().parse_args(["models", *argv]))

    assert cli("canary", "digits", second, "--weight", "10")["canary"] == {"version": second, "weight": 0.1}
    with pytest.raises(VersionInUse):
        cli("delete", "digits", second)
    with pytest.raises(SystemExit, match="--end"):
        cli("canary", "digits")
    assert cli("canary", "digits", "--end", "--reason", "enough")["canary"] is None
    assert cli("delete", "digits", second) == {"name": "digits", "version": second, "deleted": True}
    assert registry.list_versions("digits") == [first]


def test_publish_and_describe_say_what_the_model_needs_and_the_functions_limits(registry, tmp_path):
    import argparse

    from maas.models_cli import run as run_command

    path = tmp_path / "blend.onnx"
    path.write_bytes(build_two_input_onnx())
    published = run_command(
        registry, argparse.Namespace(models_command="publish", name="blend", onnx=str(path), labels=None)
    )
    # A model of a few hundred bytes: the runtime's 128 MB + 25 MB of load, and 64 MB of /tmp beside its file;
    # the limits are template.yaml's smallest serving function (ApiFunction's 1024 MB and 512 MB of /tmp).
    serving = {
        "needs": {"memory_mb": 154, "storage_mb": 65},
        "limits": {"memory_mb": 1024, "storage_mb": 512},
        "fits": True,
    }
    assert published["serving"] == serving
    described = run_command(
        registry, argparse.Namespace(models_command="describe", name="blend", alias=None, version=None)
    )
    assert described["serving"] == serving


def test_publish_refuses_a_model_larger_than_the_function_flags_give(registry, tmp_path):
    from maas.cli import build_parser
    from maas.models_cli import run as run_command
    from maas_core.shared.errors import ModelTooLarge

    path = tmp_path / "blend.onnx"
    path.write_bytes(build_two_input_onnx())
    # As the command line gives it: maas models publish --name blend --onnx F --memory-mb 150
    args = build_parser().parse_args(
        ["models", "publish", "--name", "blend", "--onnx", str(path), "--memory-mb", "150"]
    )
    with pytest.raises(ModelTooLarge) as refused:  # the CLI prints its body and exits 1
        run_command(registry, args)
    assert refused.value.code == "model_too_large" and refused.value.status == 422
    assert "needs memory 154 MB (this function has 150 MB)" in refused.value.message
    assert refused.value.details["limits"] == {"memory_mb": 150, "storage_mb": 512}
    assert registry.list_models() == []
