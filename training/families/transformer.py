"""The ``transformer`` family: a BERT-style encoder text classifier on WordPiece ids.

Token and position embeddings (summed, layer-normed), ``layers`` post-norm encoder blocks
(multi-head self-attention, then a GELU feed-forward, each with a residual and layer norm), and
BERT's pooler (the ``[CLS]`` position through a tanh dense layer) under the softmax head. The sizes
are hyperparameters, with named presets (``PRESETS``): ``tiny`` for tests, ``small`` (the default)
that trains here on CPU, and ``base`` with BERT-base's dimensions (~110M parameters), which builds,
exports and serves but is never trained in tests.

Attention is written with Dense layers and ``keras.ops`` (reshape, transpose, matmul, softmax)
rather than ``keras.layers.MultiHeadAttention``, whose einsums tf2onnx exports as ONNX ``Einsum``:
int8 dynamic quantisation only quantises ``MatMul``/``Gemm``, so an Einsum graph would keep its
attention weights fp32. Only the token ids enter the graph: the padding mask is computed inside it
(``ids != [PAD]``), so the serving contract is the other text families' (one int64 input).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from maas_core.shared.text import PAD_INDEX, WORDPIECE_TYPE
from training.families import text
from training.families.base import BuildInputs

if TYPE_CHECKING:
    pass

INPUT_NAME = "token_ids"
NEGATIVE = -1e9  # added to the attention scores of [PAD] keys: softmax gives them 0


@dataclass(frozen=True)
class Preset:
    layers: int
    hidden_size: int
    heads: int
    feed_forward_size: int
    sequence_length: int  # WordPiece ids per text, [CLS] and [SEP] included
    vocabulary_size: int  # the most WordPiece entries learnt from the train channel


PRESETS = {
    "tiny": Preset(layers=1, hidden_size=32, heads=2, feed_forward_size=64, sequence_length=32, vocabulary_size=600),
    "small": Preset(
        layers=2, hidden_size=128, heads=4, feed_forward_size=512, sequence_length=48, vocabulary_size=4000
    ),
    "base": Preset(
        layers=12, hidden_size=768, heads=12, feed_forward_size=3072, sequence_length=128, vocabulary_size=30522
    ),
}
DEFAULT_PRESET = "small"
# The job's hyperparameters that size the encoder (0: the preset's); build takes them by these names.
ARCHITECTURE = ("layers", "hidden_size", "heads", "feed_forward_size")


def settings(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """The preset (``preset``, default ``small``) with each size the job was given instead; raises
    ValueError naming what does not fit (an unknown preset, heads that do not divide the width)."""
    name = str(hyperparameters.get("preset") or DEFAULT_PRESET)
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {name!r}")
    chosen = asdict(PRESETS[name])
    given = {k: hyperparameters.get(k) for k in (*ARCHITECTURE, "sequence_length", "vocabulary_size")}
    chosen.update({k: int(v) for k, v in given.items() if v})
    negative = [f"{k} {v}" for k, v in chosen.items() if v < 1]
    if negative:
        raise ValueError(f"transformer sizes must be >= 1 (0: the preset's); got {', '.join(negative)}")
    if chosen["hidden_size"] % chosen["heads"]:
        raise ValueError(f"hidden_size ({chosen['hidden_size']}) must be a multiple of heads ({chosen['heads']})")
    if chosen["sequence_length"] < 3:
        raise ValueError(f"sequence_length must be >= 3 ([CLS], a piece, [SEP]); got {chosen['sequence_length']}")
    return {"preset": name, **chosen}


def build(given: BuildInputs, dropout: float = 0.1) -> Any:
    """The encoder on ids ``[N, sequence_length]`` with the sizes ``given.sizes`` names
    (``ARCHITECTURE``), compiled with Adam (warm-up free: the presets are shallow enough) for integer
    labels."""
    import keras
    from keras import ops

    from training.models import softmax_classifier

    length = int(given.x.shape[1])
    hidden_size, heads, ff = (given.sizes[k] for k in ("hidden_size", "heads", "feed_forward_size"))
    ids = keras.Input(shape=(length,), dtype="int64", name=INPUT_NAME)
    keep = ops.cast(ops.not_equal(ids, PAD_INDEX), "float32")  # [N, L]: 1 for text, 0 for [PAD]
    bias = ops.reshape((1.0 - keep) * NEGATIVE, (-1, 1, 1, length))  # broadcast over heads and queries
    positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1  # 0..L-1 per row, from the input's own shape
    x = keras.layers.Embedding(given.vocabulary_size, hidden_size, name="token_embedding")(ids)
    x = x + keras.layers.Embedding(length, hidden_size, name="position_embedding")(positions)
    x = keras.layers.LayerNormalization(epsilon=1e-12, name="embedding_norm")(x)
    x = keras.layers.Dropout(dropout)(x)
    for i in range(given.sizes["layers"]):
        x = _block(x, bias, f"layer_{i}", length=length, width=hidden_size, heads=heads, ff=ff, dropout=dropout)
    cls = x[:, 0, :]  # [CLS]: shared.text puts it first in every row
    pooled = keras.layers.Dense(hidden_size, activation="tanh", name="pooler")(cls)
    pooled = keras.layers.Dropout(dropout)(pooled)
    return softmax_classifier(ids, pooled, given.num_classes, "text_transformer", given.learning_rate)


def _block(x: Any, bias: Any, name: str, *, length: int, width: int, heads: int, ff: int, dropout: float) -> Any:
    """Post-norm self-attention and feed-forward, as in BERT."""
    import keras
    from keras import ops

    size = width // heads

    def split(t: Any) -> Any:  # [N, L, W] -> [N, heads, L, size]
        return ops.transpose(ops.reshape(t, (-1, length, heads, size)), (0, 2, 1, 3))

    q, k, v = (split(keras.layers.Dense(width, name=f"{name}_{p}")(x)) for p in ("query", "key", "value"))
    scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(size)) + bias
    weights = keras.layers.Dropout(dropout)(ops.softmax(scores, axis=-1))
    context = ops.reshape(ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3)), (-1, length, width))
    attended = keras.layers.Dropout(dropout)(keras.layers.Dense(width, name=f"{name}_attention_output")(context))
    x = keras.layers.LayerNormalization(epsilon=1e-12, name=f"{name}_attention_norm")(x + attended)
    hidden = keras.layers.Dense(ff, name=f"{name}_intermediate")(x)
    # GELU written out with erf: Keras' exact gelu traces to TF's Erfc, which ONNX lacks, and this is
    # the form onnxruntime's transformer optimiser fuses into one Gelu op.
    hidden = hidden * 0.5 * (1.0 + ops.erf(hidden * (1.0 / math.sqrt(2.0))))
    out = keras.layers.Dropout(dropout)(keras.layers.Dense(width, name=f"{name}_output")(hidden))
    return keras.layers.LayerNormalization(epsilon=1e-12, name=f"{name}_output_norm")(x + out)


TOKENIZING = (
    "tokenise with inputs[0].tokenizer (shared.text, wordpiece): lowercase, accents stripped, words and "
    "punctuation, greedy longest vocabulary pieces (## continues a word), [CLS] pieces [SEP], "
    "cut to its sequence_length (the text's start is kept) and padded with [PAD] after"
)
IN_GRAPH = ["padding mask (ids != 0)", "token + position embeddings", "encoder blocks", "[CLS] pooler"]

FAMILY = text.text_family(
    "transformer",
    "reviews-transformer",
    1e-3,
    build,
    input_name=INPUT_NAME,
    preprocessing=text.text_preprocessing(TOKENIZING, IN_GRAPH),
    tokenizer=WORDPIECE_TYPE,
    settings=settings,
    architecture=ARCHITECTURE,
    onnx_model_type="bert",
)
