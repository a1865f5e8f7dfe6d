"""The word tokenizer shared by training and serving, and the string input path of the inference
core and the KServe v2 reader, on a LoadedModel whose session echoes the token ids it is fed."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from maas_core.shared.errors import InvalidInput
from maas_core.shared.inference import feeds_from_body
from maas_core.shared.kserve import feeds_from_infer, tensor_metadata
from maas_core.shared.manifest import _tensor_problems
from maas_core.shared.model_cache import LoadedModel
from maas_core.shared.model_check import check_session
from maas_core.shared.schemas import InferRequest
from maas_core.shared.text import (
    CLS_INDEX,
    MAX_WORD_CHARS,
    OOV_INDEX,
    PAD_INDEX,
    SEP_INDEX,
    WordPieceTokenizer,
    WordTokenizer,
    tokenizer_problems,
)
from tests_support import digits_manifest, verified
from training.vocabulary import learn_tokenizer

TEXTS = ["Great product, great price!", "Awful product", "the product is NOT great"]


def tokenizer(length: int = 4) -> WordTokenizer:
    return learn_tokenizer("word", TEXTS, max_tokens=6, sequence_length=length)


def test_vocabulary_is_padding_unknown_then_most_frequent_words():
    assert tokenizer().vocabulary == ["", "[UNK]", "great", "product", "price", "awful"]


def test_ids_lowercase_map_unknown_words_and_left_pad():
    t = tokenizer()
    assert t.words("GREAT, Product!") == ["great", "product"]
    assert t.ids("GREAT, Product!") == [PAD_INDEX, PAD_INDEX, 2, 3]
    assert t.ids("great zebra") == [PAD_INDEX, PAD_INDEX, 2, OOV_INDEX]
    assert t.ids("") == [PAD_INDEX] * 4


def test_long_texts_keep_their_first_words():
    assert tokenizer(length=2).ids("awful price great product") == [5, 4]


def test_encode_is_int64_rows_of_sequence_length():
    ids = tokenizer().encode(["great", "awful price"])
    assert ids.dtype == np.int64 and ids.tolist() == [[0, 0, 0, 2], [0, 0, 5, 4]]


def test_manifest_round_trip():
    t = tokenizer()
    entry = t.to_manifest()
    assert entry["graph_input"] == "tokens" and entry["oov_index"] == 1 and entry["pad_index"] == 0
    assert tokenizer_problems(entry) == []
    again = WordTokenizer.from_manifest(entry)
    assert again == t and again.encode(TEXTS).tolist() == t.encode(TEXTS).tolist()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"vocabulary": "great"}, "vocabulary"),
        ({"sequence_length": 0}, "sequence_length"),
        ({"pattern": "("}, "pattern"),
        ({"oov_index": 3}, "oov_index"),
        ({"graph_input": ""}, "graph_input"),
    ],
)
def test_a_broken_tokenizer_entry_does_not_verify(change, why):
    with pytest.raises(ValueError, match=why):
        WordTokenizer.from_manifest({**tokenizer().to_manifest(), **change})


class EchoSession:
    """Stands in for onnxruntime: answers the token ids as 'probabilities'."""

    def get_inputs(self) -> list[Any]:
        return [type("I", (), {"name": "tokens", "type": "tensor(int64)", "shape": [None, 24]})()]

    def get_outputs(self) -> list[Any]:
        return [type("O", (), {"name": "probabilities", "type": "tensor(float)", "shape": [None, 4]})()]

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [feeds["tokens"].astype(np.float32)]


def text_model() -> LoadedModel:
    spec = {"name": "text", "dtype": "string", "shape": [None], "tokenizer": tokenizer().to_manifest()}
    manifest = {
        **digits_manifest(),
        "task": "classification",
        "inputs": [spec],
        "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [None, 4]}],
        "labels": ["a", "b", "c", "d"],
    }
    return LoadedModel("reviews", "v1", verified(manifest, "reviews"), EchoSession(), 0.0)


def test_manifest_with_a_tokenised_input_verifies_and_matches_the_graph():
    model = text_model()
    check_session(model.session, model.manifest)
    spec = model.manifest.inputs[0].to_json()
    assert _tensor_problems("inputs", [spec]) == []
    assert _tensor_problems("inputs", [{**spec, "dtype": "int64"}]) == [
        "inputs[0].tokenizer: only a string input is tokenised"
    ]
    assert tensor_metadata(model.manifest.inputs) == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]


@pytest.mark.parametrize(
    "body",
    [
        {"instances": ["great", "awful price"]},
        {"inputs": ["great", "awful price"]},
        {"inputs": {"text": ["great", "awful price"]}},
    ],
)
def test_strings_become_the_graph_inputs_token_ids(body):
    feeds = feeds_from_body(body, text_model(), max_batch=8)
    assert list(feeds) == ["tokens"] and feeds["tokens"].tolist() == [[0, 0, 0, 2], [0, 0, 5, 4]]


@pytest.mark.parametrize("instances", [[1.0, 2.0], ["great", None], [["great"]]])
def test_a_non_string_instance_is_a_400_naming_the_input(instances):
    with pytest.raises(InvalidInput) as err:
        feeds_from_body({"instances": instances}, text_model(), max_batch=8)
    assert err.value.status == 400 and err.value.code == "invalid_input"
    assert err.value.details["input"] == "text" and "string" in err.value.message


def test_v2_bytes_tensor_is_tokenised():
    request = InferRequest(
        inputs=[{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["great", "awful price"]}]
    )
    feeds = feeds_from_infer(request, text_model(), max_batch=8)
    assert feeds["tokens"].tolist() == [[0, 0, 0, 2], [0, 0, 5, 4]]


@pytest.mark.parametrize(
    ("tensor", "why"),
    [
        ({"shape": [1], "datatype": "FP32", "data": [1.0]}, "datatype FP32; the model takes BYTES"),
        ({"shape": [1], "datatype": "BYTES", "data": [7]}, "each instance must be a string"),
        ({"shape": [2], "datatype": "BYTES", "data": ["great"]}, "1 data elements"),
    ],
)
def test_v2_bad_text_tensors_name_the_input(tensor, why):
    request = InferRequest(inputs=[{"name": "text", **tensor}])
    with pytest.raises(InvalidInput) as err:
        feeds_from_infer(request, text_model(), max_batch=8)
    assert why in err.value.message and "'text'" in err.value.message


# -- WordPiece (the transformer family's tokenizer) -------------------------------------------

PIECES = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "great", "!", ",", "a", "##ff", "cafe"]


def wordpiece(length: int = 8, vocabulary: list[str] = PIECES) -> WordPieceTokenizer:
    return WordPieceTokenizer(vocabulary, length)


def test_wordpiece_splits_punctuation_lowercases_and_strips_accents():
    assert wordpiece().words("UnAffable, GREAT café!") == ["unaffable", ",", "great", "cafe", "!"]
    assert wordpiece().words("snake_case") == ["snake", "_", "case"]


def test_wordpiece_takes_the_longest_piece_first_and_a_word_it_cannot_cover_is_one_unknown():
    t = wordpiece()
    assert t.pieces("unaffable") == ["un", "##aff", "##able"]  # not "un", "##a"...: longest first
    assert t.pieces("unaffablex") == ["[UNK]"]  # BERT: one uncovered part makes the whole word unknown
    assert t.pieces("a" * (MAX_WORD_CHARS + 1)) == ["[UNK]"]


def test_wordpiece_ids_are_cls_pieces_sep_then_right_padding():
    assert wordpiece().ids("Unaffable!") == [CLS_INDEX, 4, 5, 6, 8, SEP_INDEX, PAD_INDEX, PAD_INDEX]
    assert wordpiece().ids("") == [CLS_INDEX, SEP_INDEX] + [PAD_INDEX] * 6


def test_a_long_wordpiece_text_keeps_its_first_pieces_and_ends_with_sep():
    ids = wordpiece(length=5).ids("unaffable great great")
    assert ids == [CLS_INDEX, 4, 5, 6, SEP_INDEX]


def test_learnt_wordpiece_vocabulary_covers_the_training_words_and_splits_new_ones():
    texts = ["the unbreakable mug", "an unbreakable lamp", "the breakable mug", "a lamp, a mug"] * 3
    t = learn_tokenizer("wordpiece", texts, max_tokens=60, sequence_length=16)
    assert t.vocabulary[:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"] and len(t.vocabulary) <= 60
    assert [t.pieces(w) for w in ("unbreakable", "mug")] == [["unbreakable"], ["mug"]]
    assert t.pieces("lampmug") == ["lamp", "##m", "##ug"]  # an unseen word is cut into known pieces
    assert OOV_INDEX not in t.ids("The unbreakable lamp")


def test_wordpiece_manifest_round_trip_gives_the_same_ids():
    t = learn_tokenizer("wordpiece", TEXTS, max_tokens=40, sequence_length=12, graph_input="token_ids")
    entry = t.to_manifest()
    assert entry["type"] == "wordpiece" and entry["padding"] == "post" and tokenizer_problems(entry) == []
    again = WordTokenizer.from_manifest(entry)
    assert isinstance(again, WordPieceTokenizer) and again == t
    assert again.encode(TEXTS).tolist() == t.encode(TEXTS).tolist()


def test_a_word_tokenizer_manifest_still_reads_as_a_word_tokenizer():
    again = WordTokenizer.from_manifest(tokenizer().to_manifest())
    assert type(again) is WordTokenizer and again.ids("GREAT, Product!") == [PAD_INDEX, PAD_INDEX, 2, 3]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"type": "bpe"}, "type: expected 'word' or 'wordpiece', got 'bpe'"),
        ({"padding": "pre"}, "expected padding 'post'"),
        ({"continuation_prefix": "@@"}, "continuation_prefix: expected '##'"),
        ({"special_tokens": ["[PAD]"]}, "special_tokens: expected"),
        ({"vocabulary": ["[UNK]", "[PAD]", "[CLS]", "[SEP]"]}, "vocabulary: expected to start with"),
        ({"sequence_length": 2}, "sequence_length: expected at least 3"),
        ({"strip_accents": "yes"}, "strip_accents: expected true or false"),
        ({"max_word_chars": 5}, "max_word_chars: expected 100"),
    ],
)
def test_a_broken_wordpiece_entry_does_not_verify(change, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        WordTokenizer.from_manifest({**wordpiece().to_manifest(), **change})


def test_a_wordpiece_input_is_served_as_its_ids():
    spec = {"name": "text", "dtype": "string", "shape": [None], "tokenizer": wordpiece().to_manifest()}
    manifest = {**verified_text_manifest(), "inputs": [spec]}
    model = LoadedModel("reviews", "v1", verified(manifest, "reviews"), EchoSession(), 0.0)
    feeds = feeds_from_body({"instances": ["Unaffable!", "great"]}, model, max_batch=8)
    assert feeds["tokens"].tolist() == [[2, 4, 5, 6, 8, 3, 0, 0], [2, 7, 3, 0, 0, 0, 0, 0]]


def verified_text_manifest() -> dict[str, Any]:
    return {
        **digits_manifest(),
        "task": "classification",
        "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [None, 4]}],
        "labels": ["a", "b", "c", "d"],
    }
