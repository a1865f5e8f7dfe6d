"""The text families (bag of words and LSTM) on the generated reviews channel: each trains, exports
with parity, publishes to a moto registry, and serves raw strings through the inference core and
the KServe v2 reader with the labels the Keras model gives the same texts.

One short job per family is shared by the module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_job import clean_env, mocked_registry, run_to_publish, write_hyperparameters

from maas_core.shared import inference, kserve
from maas_core.shared.errors import InvalidInput
from maas_core.shared.manifest import Manifest
from maas_core.shared.model_cache import ModelCache
from maas_core.shared.registry import Registry
from maas_core.shared.schemas import InferRequest
from training.data import ChannelError, load_channel
from training.job import main
from training.text_data import LABELS, write_text_channel

pytestmark = pytest.mark.training

BUCKET = "maas-test-text-models"
RUNS: dict[str, dict[str, Any]] = {
    # objective size: the smallest file, whatever it costs (the default, cost, publishes this tiny model's fp32)
    "text": {"epochs": 8, "compression": "int8-dynamic,int8-static,fp16", "objective": "size"},
    "text-rnn": {"epochs": 3, "compression": "int8-dynamic"},
}
TEXTS = ["Great kettle, would buy again!", "The lamp is flimsy", "My drill arrived late", "sturdy, not flimsy"]


def opt_ml(root: Path, hyperparameters: dict[str, Any], fmt: str = "csv") -> Path:
    write_text_channel(root / "input" / "data" / "train", rows=1500, seed=1, fmt=fmt)
    return write_hyperparameters(root, hyperparameters)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp, mocked_registry(mp, BUCKET):
        done = {}
        for family, hp in RUNS.items():
            root = opt_ml(tmp_path_factory.mktemp(family), {"family": family, "seed": 3, **hp})
            done[family] = run_to_publish(root)
        yield done


@pytest.mark.parametrize("family", list(RUNS))
def test_manifest_carries_the_tokenizer_of_the_string_input(jobs, family):
    job = jobs[family]
    manifest = Registry(BUCKET).read_manifest(job.published["name"], job.published["version"]).to_json()
    Manifest.from_json(manifest)
    (spec,) = manifest["inputs"]
    assert {k: spec[k] for k in ("name", "dtype", "shape")} == {"name": "text", "dtype": "string", "shape": [None]}
    tokenizer = spec["tokenizer"]
    assert tokenizer["graph_input"] == "tokens" and tokenizer["sequence_length"] == 24
    assert tokenizer["vocabulary"][:2] == ["", "[UNK]"] and "flimsy" in tokenizer["vocabulary"]
    assert manifest["labels"] == LABELS
    assert manifest["metrics"]["parity_max_abs_diff"] <= 1e-4
    assert manifest["metrics"]["accuracy"] > 0.9, manifest["metrics"]
    assert "do not tokenise" in manifest["preprocessing"]["client"]
    methods = [c["method"] for c in manifest["compression"]["candidates"]]
    assert methods == ["fp32", *RUNS[family]["compression"].split(",")]
    candidates = {c["method"]: c for c in manifest["compression"]["candidates"]}
    assert manifest["compression"]["objective"] == RUNS[family].get("objective", "cost")
    if family == "text":
        assert manifest["compression"]["method"] == "int8-dynamic", candidates  # Gather and MatMul weights in int8
    assert candidates["int8-dynamic"]["size_bytes"] < candidates["fp32"]["size_bytes"]
    assert manifest["training_job"]["hyperparameters"]["text_column"] == "text"
    onnx_inputs = {"text": "tokens"}
    assert onnx_inputs[spec["name"]] == tokenizer["graph_input"]


@pytest.mark.parametrize("family", list(RUNS))
def test_served_strings_get_the_labels_keras_gives(jobs, family):
    import keras

    job = jobs[family]
    model = ModelCache(BUCKET, registry=Registry(BUCKET)).get(job.published["name"], job.published["version"])
    tokenizer = model.tokenizer(model.manifest.inputs[0])
    keras_model = keras.saving.load_model(job.root / "model" / "model.keras")
    expected = keras_model.predict(tokenizer.encode(TEXTS), verbose=0)

    feeds = inference.feeds_from_body({"instances": TEXTS}, model, max_batch=16)
    predictions = inference.format_predictions(model, inference.run(model, feeds))
    labels = [p["label"] for p in predictions]
    assert labels == [model.labels[i] for i in expected.argmax(1)]
    assert labels[:3] == ["positive", "negative", "shipping"]
    assert np.max(np.abs(np.asarray([p["probabilities"] for p in predictions]) - expected)) < 0.05

    request = InferRequest(inputs=[{"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}])
    outputs = inference.run(model, kserve.feeds_from_infer(request, model, max_batch=16))
    assert [model.labels[i] for i in outputs["probabilities"].argmax(1)] == labels

    with pytest.raises(InvalidInput) as err:
        inference.feeds_from_body({"instances": [[1, 2, 3]]}, model, max_batch=16)
    assert err.value.code == "invalid_input" and err.value.details["input"] == "text"


def test_jsonl_and_csv_text_channels_load_the_same_rows(tmp_path):
    from_csv = load_channel(write_text_channel(tmp_path / "csv", rows=60), text_column="text")
    from_jsonl = load_channel(write_text_channel(tmp_path / "jsonl", rows=60, fmt="jsonl"), text_column="text")
    assert from_csv.x.tolist() == from_jsonl.x.tolist() and from_csv.y.tolist() == from_jsonl.y.tolist()
    assert from_csv.labels == LABELS and from_csv.x.dtype == object and isinstance(from_csv.x[0], str)


def test_a_missing_text_column_fails_the_job_naming_it(tmp_path, monkeypatch):
    clean_env(monkeypatch)
    root = opt_ml(tmp_path / "opt_ml", {"family": "text", "text_column": "review"})
    assert main([], root=root) == 1
    failure = (root / "output" / "failure").read_text()
    assert "no 'review' value" in failure and "text_column" in failure
    (tmp_path / "npz").mkdir()
    np.savez(tmp_path / "npz" / "a.npz", x=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(ChannelError, match=r"text comes as \.csv or \.jsonl"):
        load_channel(tmp_path / "npz", text_column="text")
