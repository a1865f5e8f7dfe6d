"""The text families on raw strings: ``text`` (embedding + mean pooling, a bag of words) and
``text-rnn`` (embedding + LSTM, which reads word order). ``shared.text``'s tokenizer turns each
string into int64 token ids; the graph takes the ids and the manifest carries the tokenizer."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.families.base import CLASSIFICATION, PROBABILITIES, BuildInputs, Family, defaults_for_zero

if TYPE_CHECKING:
    import numpy as np

INPUT_NAME = "tokens"
EMBEDDING_DIM = 32
UNITS = 32
SEQUENCE_LENGTH = 24  # words per text, when the job is given no sequence_length
VOCABULARY_SIZE = 5000  # most frequent training words kept, padding and unknown included


def build(given: BuildInputs, *, recurrent: bool) -> Any:
    """Embedding, then mean pooling or an LSTM, then a dense layer and softmax.

    No masking: ids are left-padded, so the LSTM ends on the last real word, and tf2onnx turns the
    unmasked Keras LSTM into one ONNX ``LSTM`` op."""
    import keras

    from training.models import softmax_classifier

    inputs = keras.Input(shape=(given.x.shape[1],), dtype="int64", name=INPUT_NAME)
    x = keras.layers.Embedding(given.vocabulary_size, EMBEDDING_DIM, name="embedding")(inputs)
    sequence = keras.layers.LSTM(UNITS, name="lstm") if recurrent else keras.layers.GlobalAveragePooling1D(name="mean")
    x = sequence(x)
    x = keras.layers.Dense(UNITS, activation="relu", name="dense")(x)
    name = "text_lstm" if recurrent else "text_bag_of_words"
    return softmax_classifier(inputs, x, given.num_classes, name, given.learning_rate)


CLIENT = "send raw text, one string per instance; do not tokenise"
WORD_TOKENIZING = (
    "tokenise with inputs[0].tokenizer (shared.text): lowercase, words by its pattern, "
    "vocabulary ids (1 = unknown), cut and left-padded to its sequence_length"
)


def text_preprocessing(tokenizing: str, in_graph: list[str]) -> Callable[[int, list[str] | None], dict[str, Any]]:
    """A text family's manifest ``preprocessing``: clients send raw text, the server tokenises as
    ``tokenizing`` says, the graph does ``in_graph``."""

    def preprocessing(train_rows: int, columns: list[str] | None) -> dict[str, Any]:
        return {"client": CLIENT, "server": [tokenizing], "in_graph": list(in_graph)}

    return preprocessing


def rows_problem(name: str, x: np.ndarray) -> str | None:
    return None  # load_channel read a text column: one string per row


def write_example(folder: Path) -> Path:
    from training.text_data import write_text_channel

    return write_text_channel(folder)


def text_family(
    name: str, default_model_name: str, learning_rate: float, build: Callable[..., Any], **more: Any
) -> Family:
    """A classifier on raw text (the bundled reviews by default), its ids from a tokenizer learnt from
    the train rows; ``more`` sets the other ``Family`` fields (input, tokenizer, preprocessing...)."""
    fields: dict[str, Any] = {
        "input_name": INPUT_NAME,
        "preprocessing": text_preprocessing(WORD_TOKENIZING, ["embedding of the token ids"]),
        "settings": defaults_for_zero(sequence_length=SEQUENCE_LENGTH, vocabulary_size=VOCABULARY_SIZE),
        **more,
    }
    return Family(
        name=name,
        task=CLASSIFICATION,
        output_name=PROBABILITIES,
        default_model_name=default_model_name,
        learning_rate=learning_rate,
        build=build,
        rows_problem=rows_problem,
        write_example=write_example,
        text=True,
        **fields,
    )


BAG_OF_WORDS = text_family("text", "reviews", 1e-2, functools.partial(build, recurrent=False))
RNN = text_family("text-rnn", "reviews-rnn", 5e-3, functools.partial(build, recurrent=True))
