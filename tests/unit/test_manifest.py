"""The typed manifest: built only from a JSON object that verifies (every problem named), written back
exactly (keys the schema does not name and their order kept), and frozen."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from maas_core.shared.errors import ModelIntegrityError
from maas_core.shared.manifest import DRAFT_FIELDS, REQUIRED_FIELDS, Draft, Manifest, TensorSpec
from tests_support import digits_manifest
from training.vocabulary import learn_tokenizer

SHA = "ab" * 32


def published_json() -> dict[str, Any]:
    """A manifest as a newer trainer might write it: keys in another order, keys MaaS does not know."""
    tokenizer = learn_tokenizer("word", ["good", "bad"], max_tokens=4, sequence_length=3).to_manifest()
    body = {
        "name": "reviews",
        "version": "20260101T000000Z-abababab",
        "model_card": {"owner": "team-a", "limits": [1, 2, {"x": None}]},
        **digits_manifest(),
        "inputs": [
            {"description": "one review", "name": "text", "dtype": "string", "shape": [None], "tokenizer": tokenizer},
            {"name": "age", "dtype": "float32", "shape": [None, 2], "columns": ["a", "b"]},
        ],
        "artifact": {"file": "model.onnx", "sha256": SHA, "size_bytes": 10, "compressed": True},
        "verified": {"onnxruntime": "1.0", "at": "2026-01-01T00:00:00+00:00"},
    }
    body["labels"] = None  # a null the schema names: it stays a null
    body["task"] = "regression"
    return body


def test_a_manifest_reads_back_as_the_exact_json_it_came_from():
    body = published_json()
    manifest = Manifest.from_json(copy.deepcopy(body))
    assert json.dumps(manifest.to_json()) == json.dumps(body)  # key order and unknown keys included
    assert manifest.extra["model_card"]["limits"][2] == {"x": None}
    assert manifest.inputs[0].extra == {"description": "one review"} and manifest.artifact.extra == {"compressed": True}
    assert manifest.inputs[0].graph_input == "tokens" and manifest.inputs[1].columns == ("a", "b")
    assert manifest.artifact.sha256 == SHA and manifest.labels is None and manifest.task == "regression"


def test_fields_a_change_adds_come_after_the_ones_that_came():
    draft = Draft.from_json(digits_manifest())
    body = dataclasses.replace(draft, extra={"note": "x"}).to_json()
    assert list(body) == [*digits_manifest(), "note"]


def test_a_manifest_cannot_be_changed_in_place():
    manifest = Manifest.from_json(published_json())
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.version = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.inputs[0].shape = (None, 3)  # type: ignore[misc]
    with pytest.raises(TypeError):
        manifest.metrics["accuracy"] = 1.0
    with pytest.raises(TypeError):
        manifest.extra["model_card"]["owner"] = "someone else"
    with pytest.raises(AttributeError):
        manifest.compression["candidates"].append({})  # a tuple
    with pytest.raises(TypeError):
        manifest.inputs[0].tokenizer["vocabulary"][0] = "x"  # type: ignore[index]
    assert Manifest.from_json(published_json()) == manifest


def test_a_changed_copy_is_frozen_too():
    draft = dataclasses.replace(Draft.from_json(digits_manifest()), metrics={"accuracy": [0.9]})
    with pytest.raises(TypeError):
        draft.metrics["accuracy"] = 1.0
    assert draft.metrics["accuracy"] == (0.9,) and draft.to_json()["metrics"] == {"accuracy": [0.9]}


def test_specs_compare_by_value():
    assert TensorSpec("x", "float32", [None, 3]) == TensorSpec("x", "float32", (None, 3))  # type: ignore[arg-type]
    assert TensorSpec("x", "float32", (None, 3)).to_json() == {"name": "x", "dtype": "float32", "shape": [None, 3]}


def with_(change: dict[str, Any], drop: str | None = None) -> dict[str, Any]:
    body = {**published_json(), **change}
    if drop:
        del body[drop]
    return body


def tensor(**change: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "dtype": "float32", "shape": [None, 2], **change}]}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([1], "manifest: expected a JSON object, got list"),
        (with_({}, drop="artifact"), "artifact: missing"),
        (with_({"schema_version": 2}), "schema_version: expected 1, got 2"),
        (with_({"task": "ranking"}), "task: expected one of ('classification', 'regression'), got 'ranking'"),
        (with_({"outputs": []}), "outputs: expected a non-empty list of tensors, got list"),
        (with_({"outputs": {"y": 1}}), "outputs: expected a non-empty list of tensors, got dict"),
        (with_({"inputs": ["x"]}), "inputs[0]: expected an object"),
        (with_(tensor(name="")), "inputs[0].name: expected a non-empty string"),
        (
            with_(tensor(dtype="uint16")),
            "inputs[0].dtype: expected one of ('float32', 'float64', 'int64', 'int32', 'string', 'bool', "
            "'float16', 'uint8', 'int8'), got 'uint16'",
        ),
        (with_(tensor(shape=[None, 0])), "inputs[0].shape: expected a list of positive ints or null, got [None, 0]"),
        (with_(tensor(tokenizer={})), "inputs[0].tokenizer: only a string input is tokenised"),
        (with_(tensor(dtype="string", tokenizer=[])), "inputs[0].tokenizer: expected an object"),
        (with_({"artifact": []}), "artifact: expected an object"),
        (with_({"artifact": {"sha256": "AB" * 32, "size_bytes": 1}}), "artifact.sha256: expected 64 lowercase hex"),
        (with_({"artifact": {"sha256": SHA, "size_bytes": 0}}), "artifact.size_bytes: expected a positive integer"),
        (
            with_({"task": "classification", "labels": []}),
            "labels: a classification model needs a non-empty list of label strings",
        ),
    ],
)
def test_each_problem_is_named_and_nothing_is_built(body, problem):
    with pytest.raises(ModelIntegrityError) as err:
        Manifest.from_json(body)
    assert err.value.code == "model_integrity_error" and err.value.message == "model manifest does not verify"
    assert any(line.startswith(problem) for line in err.value.details["problems"]), err.value.details


def test_every_missing_field_is_named():
    with pytest.raises(ModelIntegrityError) as err:
        Manifest.from_json({})
    assert err.value.details["problems"] == [f"{field}: missing" for field in REQUIRED_FIELDS]
    with pytest.raises(ModelIntegrityError) as err:
        Draft.from_json({})
    assert err.value.details["problems"] == [f"{field}: missing" for field in DRAFT_FIELDS]


def test_a_manifest_of_another_model_or_version_is_refused():
    body = published_json()
    with pytest.raises(ModelIntegrityError) as err:
        Manifest.from_json(body, name="other")
    assert err.value.details["problems"] == ["name: expected 'other', got 'reviews'"]
    with pytest.raises(ModelIntegrityError) as err:
        Manifest.from_json(body, name="reviews", version="20260101T000000Z-00000000")
    assert err.value.details["problems"] == [
        "version: expected '20260101T000000Z-00000000', got '20260101T000000Z-abababab'"
    ]


def test_a_draft_needs_no_registry_fields_and_keeps_them_as_they_came():
    draft = Draft.from_json({**digits_manifest(), "name": "kept"})
    assert not isinstance(draft, Manifest) and draft.extra == {"name": "kept"}
    assert draft.to_json() == {**digits_manifest(), "name": "kept"}
