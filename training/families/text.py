"""The text families on raw strings: ``text`` (embedding + mean pooling, a bag of words) and
``text-rnn`` (embedding + LSTM, which reads word order). ``shared.text``'s tokenizer turns each
string into int64 token ids; the graph takes the ids and the manifest carries the tokenizer."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.families.base import CLASSIFICATION, PROBABILITIES, Family, defaults_for_zero

if TYPE_CHECKING:
    import numpy as np

INPUT_NAME = "tokens"
EMBEDDING_DIM = 32
UNITS = 32
SEQUENCE_LENGTH = 24  # words per text, when the job is given no sequence_length
VOCABULARY_SIZE = 5000  # most frequent training words kept, padding and unknown included


def build(
    x_train: np.ndarray,
    y_train: np.ndarray,
    num_classes: int,
    *,
    learning_rate: float,
    vocabulary_size: int,
    recurrent: bool,
) -> Any:
    """Embedding, then mean pooling or an LSTM, then a dense layer and softmax.

    No masking: ids are left-padded, so the LSTM ends on the last real word, and tf2onnx turns the
    unmasked Keras LSTM into one ONNX ``LSTM`` op."""
    import keras

    from training.models import softmax_classifier

    inputs = keras.Input(shape=(x_train.shape[1],), dtype="int64", name=INPUT_NAME)
    x = keras.layers.Embedding(vocabulary_size, EMBEDDING_DIM, name="embedding")(inputs)
    sequence = keras.layers.LSTM(UNITS, name="lstm") if recurrent else keras.layers.GlobalAveragePooling1D(name="mean")
    x = sequence(x)
    x = keras.layers.Dense(UNITS, activation="relu", name="dense")(x)
    return softmax_classifier(inputs, x, num_classes, "text_lstm" if recurrent else "text_bag_of_words", learning_rate)


def preprocessing(train_rows: int, columns: list[str] | None) -> dict[str, Any]:
    return {
        "client": "send raw text, one string per instance; do not tokenise",
        "server": [
            "tokenise with inputs[0].tokenizer (shared.text): lowercase, words by its pattern, "
            "vocabulary ids (1 = unknown), cut and left-padded to its sequence_length"
        ],
        "in_graph": ["embedding of the token ids"],
    }


def rows_problem(name: str, x: np.ndarray) -> str | None:
    return None  # load_channel read a text column: one string per row


def write_example(folder: Path) -> Path:
    from training.text_data import write_text_channel

    return write_text_channel(folder)


def _text_family(name: str, default_model_name: str, learning_rate: float, *, recurrent: bool) -> Family:
    return Family(
        name=name,
        task=CLASSIFICATION,
        input_name=INPUT_NAME,
        output_name=PROBABILITIES,
        default_model_name=default_model_name,
        learning_rate=learning_rate,
        build=functools.partial(build, recurrent=recurrent),
        preprocessing=preprocessing,
        rows_problem=rows_problem,
        write_example=write_example,
        text=True,
        settings=defaults_for_zero(sequence_length=SEQUENCE_LENGTH, vocabulary_size=VOCABULARY_SIZE),
    )


BAG_OF_WORDS = _text_family("text", "reviews", 1e-2, recurrent=False)
RNN = _text_family("text-rnn", "reviews-rnn", 5e-3, recurrent=True)
