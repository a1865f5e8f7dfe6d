"""The ``transformer`` family: its presets and sizes as job hyperparameters, and the ``tiny`` preset
trained by the job on the generated reviews, exported with parity, published to a moto registry and
served raw strings (TF Serving body and KServe v2 BYTES) with the labels Keras gives the same texts.

One short job is shared by the module; ``base`` is built (never trained) to count its parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_job import clean_env, mocked_registry, run_to_publish, write_hyperparameters

from maas_core.shared import inference, kserve
from maas_core.shared.model_cache import ModelCache
from maas_core.shared.registry import Registry
from maas_core.shared.schemas import InferRequest
from maas_core.shared.text import WordPieceTokenizer
from training.families import BuildInputs, family
from training.families.transformer import PRESETS, settings
from training.job import main
from training.text_data import LABELS, write_text_channel

pytestmark = pytest.mark.training

BUCKET = "maas-test-transformer"
HYPERPARAMETERS = {
    "family": "transformer",
    "preset": "tiny",
    "epochs": 4,
    "seed": 3,
    "compression": "int8-dynamic,fp16",
}
TEXTS = ["Great kettle, would buy again!", "The lamp is flimsy", "My drill arrived late", "sturdy, not flimsy"]


def opt_ml(root: Path, hyperparameters: dict[str, Any]) -> Path:
    write_text_channel(root / "input" / "data" / "train", rows=1500, seed=1)
    return write_hyperparameters(root, hyperparameters)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp, mocked_registry(mp, BUCKET):
        yield run_to_publish(opt_ml(tmp_path_factory.mktemp("transformer"), HYPERPARAMETERS))


def test_a_preset_gives_the_sizes_and_each_given_size_overrides_it():
    assert settings({}) == {"preset": "small", **vars(PRESETS["small"])}
    tiny = settings({"preset": "tiny", "layers": 3, "sequence_length": 0})
    assert tiny["layers"] == 3 and tiny["sequence_length"] == PRESETS["tiny"].sequence_length


@pytest.mark.parametrize(
    ("hyperparameters", "why"),
    [
        ({"preset": "huge"}, "preset must be one of tiny, small, base; got 'huge'"),
        ({"preset": "tiny", "heads": 3}, "hidden_size (32) must be a multiple of heads (3)"),
        ({"preset": "tiny", "sequence_length": 2}, "sequence_length must be >= 3"),
        ({"preset": "tiny", "layers": -1}, "transformer sizes must be >= 1 (0: the preset's); got layers -1"),
    ],
)
def test_sizes_that_do_not_fit_fail_the_job_before_training(tmp_path, monkeypatch, hyperparameters, why):
    clean_env(monkeypatch)
    root = opt_ml(tmp_path / "opt_ml", {"family": "transformer", **hyperparameters})
    assert main([], root=root) == 1
    assert why in (root / "output" / "failure").read_text()


def test_base_has_bert_base_dimensions_and_about_110m_parameters():
    import keras

    base = settings({"preset": "base"})
    sizes = {k: base[k] for k in ("layers", "hidden_size", "heads", "feed_forward_size")}
    assert sizes == {"layers": 12, "hidden_size": 768, "heads": 12, "feed_forward_size": 3072}
    ids = np.zeros((1, base["sequence_length"]), dtype=np.int64)
    model = family("transformer").build(BuildInputs(ids, np.zeros(1), 2, 1e-4, base["vocabulary_size"], sizes))
    assert 105e6 < model.count_params() < 115e6, model.count_params()  # BERT-base: 109.5M with its pooler
    keras.backend.clear_session()


def test_manifest_carries_the_wordpiece_tokenizer_and_the_resolved_sizes(job):
    manifest = Registry(BUCKET).read_manifest(job.published["name"], job.published["version"]).to_json()
    (spec,) = manifest["inputs"]
    tokenizer = spec["tokenizer"]
    assert tokenizer["type"] == "wordpiece" and tokenizer["graph_input"] == "token_ids"
    assert tokenizer["sequence_length"] == PRESETS["tiny"].sequence_length and tokenizer["padding"] == "post"
    assert tokenizer["vocabulary"][:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    hyperparameters = manifest["training_job"]["hyperparameters"]
    assert {k: hyperparameters[k] for k in ("preset", "layers", "hidden_size", "heads", "feed_forward_size")} == {
        "preset": "tiny",
        "layers": 1,
        "hidden_size": 32,
        "heads": 2,
        "feed_forward_size": 64,
    }
    assert manifest["labels"] == LABELS and manifest["metrics"]["parity_max_abs_diff"] <= 1e-4
    assert manifest["metrics"]["fp32_accuracy"] > 0.85, manifest["metrics"]
    assert "encoder blocks" in manifest["preprocessing"]["in_graph"]
    assert "model: text_transformer" in job.stdout and "tokenizer: wordpiece" in job.stdout


def test_compression_tries_the_transformer_optimiser_then_gates_int8_and_fp16_on_accuracy(job):
    manifest = Registry(BUCKET).read_manifest(job.published["name"], job.published["version"]).to_json()
    candidates = {c["method"]: c for c in manifest["compression"]["candidates"]}
    assert list(candidates) == ["fp32", "int8-dynamic", "fp16"]
    outcome = candidates["fp32"]["details"]["transformer_optimizer"]
    assert outcome["model_type"] == "bert"
    assert outcome["fused"] or "no pattern matched" in outcome["why_not"]  # measured, and said why not
    assert "transformer optimiser (bert): fused" in job.stdout
    assert (
        candidates["int8-dynamic"]["size_bytes"] < candidates["fp16"]["size_bytes"] < candidates["fp32"]["size_bytes"]
    )
    assert all(c["accuracy"] is not None and c["latency_ms"] > 0 for c in candidates.values())
    chosen = candidates[manifest["compression"]["method"]]
    assert chosen["accepted"] and (
        chosen["method"] == "fp32" or chosen["size_bytes"] < candidates["fp32"]["size_bytes"]
    )


def test_served_strings_get_the_labels_keras_gives(job):
    import keras

    model = ModelCache(BUCKET, registry=Registry(BUCKET)).get(job.published["name"], job.published["version"])
    tokenizer = model.tokenizer(model.manifest.inputs[0])
    assert isinstance(tokenizer, WordPieceTokenizer)
    keras_model = keras.saving.load_model(job.root / "model" / "model.keras")
    expected = keras_model.predict(tokenizer.encode(TEXTS), verbose=0)

    feeds = inference.feeds_from_body({"instances": TEXTS}, model, max_batch=16)
    predictions = inference.format_predictions(model, inference.run(model, feeds))
    labels = [p["label"] for p in predictions]
    assert labels == [model.labels[i] for i in expected.argmax(1)]
    assert labels[:3] == ["positive", "negative", "shipping"]
    # the published model may be a compressed candidate: its probabilities are close, not equal
    assert np.max(np.abs(np.asarray([p["probabilities"] for p in predictions]) - expected)) < 0.05

    request = InferRequest(inputs=[{"name": "text", "shape": [len(TEXTS)], "datatype": "BYTES", "data": TEXTS}])
    outputs = inference.run(model, kserve.feeds_from_infer(request, model, max_batch=16))
    assert [model.labels[i] for i in outputs["probabilities"].argmax(1)] == labels


def test_the_hard_review_set_turns_most_sentiment_rows_on_word_order():
    from training.text_data import HARD_NEGATED_FRACTION, NEGATED_FRACTION, generate_reviews

    def order_rows(fraction: float) -> float:
        sentiment = [t for t, label in generate_reviews(1500, 2, fraction) if label != "shipping"]
        return sum(" not " in f" {t.lower()} " for t in sentiment) / len(sentiment)

    assert generate_reviews(60, 1) == generate_reviews(60, 1, NEGATED_FRACTION)  # the bundled set is unchanged
    assert order_rows(NEGATED_FRACTION) < 0.25 < 0.5 < order_rows(HARD_NEGATED_FRACTION)
