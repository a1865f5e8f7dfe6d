"""The manifest's JSON that leaves the system is what MaaS wrote before the manifest was typed: the
manifest.json a publish writes to S3 (key order included), the describe responses that carry it, and
the Open Inference model metadata, for a real exported image model and a real tokenised text model
whose manifest also carries keys the schema does not name (a newer trainer's)."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from maas_core.shared.layout import manifest_key
from tests_support import build_digits_onnx, digits_manifest, event, serialized
from training.vocabulary import learn_tokenizer

VERSION = "20260101T000000Z-00000000"  # the version the describe events name


def reviews_onnx() -> bytes:
    """A real text classifier on token ids: probabilities = softmax(float(ids) @ w)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["tokens"], ["ids"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["ids", "weights"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "reviews",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [None, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=[numpy_helper.from_array(np.arange(8, dtype="float32").reshape(4, 2) / 10, "weights")],
    )
    return serialized(graph)


def reviews_manifest() -> dict[str, Any]:
    """A text model's draft, with keys no schema field names, at the top and in a tensor."""
    tokenizer = learn_tokenizer("word", ["great product", "awful price"], max_tokens=6, sequence_length=4)
    manifest = digits_manifest()
    manifest.update(
        inputs=[
            {
                "name": "text",
                "dtype": "string",
                "shape": [None],
                "tokenizer": tokenizer.to_manifest(),
                "description": "one review",
            }
        ],
        outputs=[{"name": "probabilities", "dtype": "float32", "shape": [None, 2]}],
        labels=["negative", "positive"],
        model_card={"owner": "team-a", "tags": ["text", "reviews"]},
    )
    return manifest


CASES = {
    "digits": (build_digits_onnx, digits_manifest, [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]),
    "reviews": (reviews_onnx, reviews_manifest, [{"name": "text", "datatype": "BYTES", "shape": [-1]}]),
}


def as_written(name: str, data: bytes, draft: dict[str, Any], verified_at: str) -> dict[str, Any]:
    """The manifest.json MaaS wrote before the typed manifest: the draft's keys in order, then the
    registry's (name, version, artifact, verified), then the version's number (added with numbers)."""
    return {
        **copy.deepcopy(draft),
        "name": name,
        "version": VERSION,
        "artifact": {"file": "model.onnx", "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)},
        "verified": {"onnxruntime": ort.__version__, "at": verified_at},
        "version_number": 1,
    }


def request(name: str, route: str) -> dict[str, Any]:
    evt = event(route)
    evt["path"] = evt["path"].replace("/digits/", f"/{name}/")
    evt["pathParameters"] = {**evt["pathParameters"], "name": name}
    return evt


def same_json(a: Any, b: Any) -> bool:
    """Equal, with every object's keys in the same order."""
    return json.dumps(a) == json.dumps(b)


@pytest.mark.parametrize("name", list(CASES))
def test_published_manifest_and_metadata_responses_are_unchanged(s3, registry, api, name):
    build, draft_of, v2_inputs = CASES[name]
    data, draft = build(), draft_of()
    registry.publish(name, data, draft, version=VERSION)

    raw = s3.get_object(Bucket=registry.bucket, Key=manifest_key(name, VERSION))["Body"].read()
    stored = json.loads(raw)
    expected = as_written(name, data, draft, stored["verified"]["at"])
    assert raw == json.dumps(expected, indent=2).encode()

    status, body, _ = api(request(name, "describe_model_version"))
    assert status == 200
    assert same_json(
        body,
        {
            "name": name,
            "version": VERSION,
            "version_number": 1,
            "aliases": {"production": VERSION},
            "canaries": {},
            "versions": [VERSION],
            "manifest": expected,
        },
    )
    status, body, _ = api(request(name, "v2_model_version_metadata"))
    assert status == 200
    outputs = expected["outputs"]
    assert same_json(
        body,
        {
            "name": name,
            "versions": [VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": v2_inputs,
            "outputs": [{"name": o["name"], "datatype": "FP32", "shape": [-1, *o["shape"][1:]]} for o in outputs],
        },
    )
