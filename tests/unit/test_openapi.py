"""The OpenAPI document and Swagger page (open routes): bounded in size whatever the models' shapes,
and built from the registry at most once per TTL and registry state."""

from __future__ import annotations

import json
from typing import Any

import pytest

from maas_core.shared.openapi import MAX_EXAMPLE_MODELS, MAX_EXAMPLE_VALUES, add_model_examples, example_bodies
from tests_support import Context, digits_manifest, event, verified


def image_model(height: int, width: int, channels: int) -> tuple[bytes, dict[str, Any]]:
    """A real ONNX regression model on images of this size: the mean of every pixel."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["image"], ["flat"], axis=1),
            helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
        ],
        "mean",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, height, width, channels])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    manifest = digits_manifest()
    manifest.pop("labels")
    manifest.update(
        task="regression",
        inputs=[{"name": "image", "dtype": "float32", "shape": [None, height, width, channels]}],
        outputs=[{"name": "mean", "dtype": "float32", "shape": [None, 1]}],
    )
    return model.SerializeToString(), manifest


def document(name: str = "openapi_spec") -> tuple[dict[str, Any], int]:
    from maas_core.functions.api import app

    response = app.lambda_handler(event(name), Context())
    assert response["statusCode"] == 200
    return (json.loads(response["body"]) if name == "openapi_spec" else {}), len(response["body"].encode())


def examples(doc: dict[str, Any], path: str = "/models/{name}/predict") -> dict[str, Any]:
    return doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]


def test_a_512x512x3_model_gets_a_schema_only_example_and_both_routes_stay_small(api, published, registry):
    from openapi_spec_validator import validate

    registry.publish("photos", *image_model(512, 512, 3))
    doc, size = document()
    validate(doc)
    for path in ("/models/{name}/predict", "/v2/models/{name}/infer"):
        photos = examples(doc, path)["photos"]
        assert "value" not in photos and "[None, 512, 512, 3]" in photos["description"]
        assert "value" in examples(doc, path)["digits"]
    assert size < 200_000
    _, swagger = document("swagger_ui")
    assert swagger < 4_000_000  # Lambda answers at most 6 MB


def test_examples_are_capped_at_max_example_values():
    _, at_cap = image_model(8, 8, MAX_EXAMPLE_VALUES // 64)
    predict, infer = example_bodies(verified(at_cap, "m"))  # type: ignore[misc]
    assert len(infer["inputs"][0]["data"]) == MAX_EXAMPLE_VALUES
    assert len(json.dumps(predict["instances"][0]).split(",")) == MAX_EXAMPLE_VALUES
    _, over = image_model(8, 8, MAX_EXAMPLE_VALUES // 64 + 1)
    assert example_bodies(verified(over, "m")) is None


def test_the_worst_case_document_fits_a_lambda_response():
    """MAX_EXAMPLE_MODELS models, each at the example cap: the size the document can reach."""
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
    from aws_lambda_powertools.event_handler.openapi.compat import model_json

    from maas_core.functions.api import app

    _, manifest = image_model(8, 8, MAX_EXAMPLE_VALUES // 64)
    manifests = [verified(manifest, f"m{i:02d}") for i in range(MAX_EXAMPLE_MODELS)]
    schema = add_model_examples(APIGatewayRestResolver.get_openapi_schema(app.app), manifests)
    size = len(model_json(schema, by_alias=True, exclude_none=True, indent=2))
    assert size < 2_500_000, size  # with Swagger's 1.7 MB page, under 6 MB


@pytest.fixture
def s3_calls(registry):
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls.append((model.name, params))

    registry.s3.meta.events.register("before-call.s3", record)
    yield calls
    registry.s3.meta.events.unregister("before-call.s3", record)


def test_the_document_reads_the_registry_once_per_ttl_and_only_what_changed(
    api, published, registry, s3_calls, monkeypatch
):
    from maas_core.functions.api import app

    doc, _ = document()
    assert examples(doc)["digits"]["summary"] == f"digits {published.version}"
    s3_calls.clear()
    document()
    document("swagger_ui")
    assert s3_calls == []  # within the TTL: no S3 call at all
    monkeypatch.setattr(app.app.published, "ttl_seconds", 0.0)
    document()
    operations = [(name, "If-None-Match" in params["headers"]) for name, params in s3_calls]
    # Past it: one listing, and the alias checked by its ETag; the immutable manifest is not read again.
    assert operations == [("ListObjectsV2", False), ("GetObject", True)], operations
    newer = registry.publish("digits", *image_model(8, 8, 1), version="29990101T000000Z-0123abcd")
    registry.promote("digits", "production", newer.version, actor="t", reason="")
    doc, _ = document()
    assert examples(doc)["digits"]["summary"] == f"digits {newer.version}"


@pytest.mark.parametrize(
    ("shape", "values"),
    [
        ([None, None], 1),  # a free sequence length: one token in the example
        ([None, 512], 512),  # a 512-token input: exactly at the cap
        ([None, 2**40], None),  # a declared dimension nobody could send: schema only, nothing allocated
        ([None, 4096, 4096, 3], None),
    ],
)
def test_an_example_is_bounded_by_the_declared_input_not_by_the_model(shape, values):
    _, manifest = image_model(8, 8, 1)
    manifest.update(inputs=[{"name": "image", "dtype": "float32", "shape": shape}])
    bodies = example_bodies(verified(manifest, "m"))
    if values is None:
        assert bodies is None
    else:
        assert bodies is not None and len(bodies[1]["inputs"][0]["data"]) == values


def test_a_model_of_large_weights_gets_a_small_example(api, published, registry):
    from bench.loading import matmul_chain
    from maas.models_cli import manifest_from_onnx

    data = matmul_chain(16 * 2**20, side=512)  # 16 MiB of weights, a [batch, 512] input
    registry.publish("weights", data, manifest_from_onnx(data, None, "weights.onnx"))
    doc, size = document()
    assert len(examples(doc, "/v2/models/{name}/infer")["weights"]["value"]["inputs"][0]["data"]) == 512
    assert size < 200_000  # the document does not grow with the model's file
