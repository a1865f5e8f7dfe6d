"""The tokenizers of the text models, used by training (to build the id sequences it trains on) and
by serving (to turn a client's raw string into the graph's token ids), so the two cannot differ.
Learning a vocabulary from a train channel is training's (``training/vocabulary.py``).

- ``word`` (:class:`WordTokenizer`): lowercase words by a pattern, one id per known word, left-padded.
- ``wordpiece`` (:class:`WordPieceTokenizer`, BERT's): lowercase, accents stripped, words and single
  punctuation marks, each word cut greedily into the longest vocabulary pieces (``##`` marks a piece
  that continues a word), ``[CLS] pieces [SEP]`` then ``[PAD]``; the transformer family's.

TensorFlow's string ops do not export to plain ONNX, so the vocabulary lives in the manifest
(``inputs[i].tokenizer``, ARCHITECTURE.md "The manifest") and the graph takes int64 ids
``[None, sequence_length]``. Pure Python and numpy: it runs in the Lambda layer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

WORD_PATTERN = r"[a-z0-9']+"
PAD_TOKEN, OOV_TOKEN = "", "[UNK]"
PAD_INDEX, OOV_INDEX = 0, 1
TOKENIZER_TYPE = "word"
# Ids are left-padded so a recurrent layer ends on the last real word; longer texts keep their start.
PADDING, TRUNCATION = "pre", "post"

WORDPIECE_TYPE = "wordpiece"
# BERT's basic tokenizer: a run of letters and digits is a word, every other visible character
# (punctuation, symbols, the underscore) a word of its own.
WORDPIECE_PATTERN = r"[^\W_]+|[^\w\s]|_"
CONTINUATION = "##"
# [PAD] and [UNK] where the word tokenizer keeps padding and unknown words (ids 0 and 1), then
# BERT's sequence markers; the vocabulary starts with these four.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
CLS_INDEX, SEP_INDEX = 2, 3
WORDPIECE_PADDING = "post"  # the graph masks [PAD] itself, so padding follows the text as in BERT
# BERT's max_input_chars_per_word: a longer "word" is one [UNK], which bounds the greedy search that
# runs on the request path (a 10 kB run of letters costs one comparison, not 10^8/2 slices).
MAX_WORD_CHARS = 100


@dataclass(frozen=True)
class WordTokenizer:
    """Lowercase, split on ``pattern`` (``re.findall``), look each word up in ``vocabulary`` (id =
    position; 0 is padding, 1 unknown words), cut to ``sequence_length`` words and pad."""

    vocabulary: list[str]
    sequence_length: int
    graph_input: str = "tokens"
    pattern: str = WORD_PATTERN
    lowercase: bool = True
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.vocabulary) if i > OOV_INDEX})
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def words(self, text: str) -> list[str]:
        return self._regex.findall(text.lower() if self.lowercase else text)

    def ids(self, text: str) -> list[int]:
        """The text's ids, truncated and padded to ``sequence_length``."""
        ids = [self._index.get(w, OOV_INDEX) for w in self.words(text)][: self.sequence_length]
        return [PAD_INDEX] * (self.sequence_length - len(ids)) + ids

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        """int64 ids ``[len(texts), sequence_length]``."""
        import numpy as np  # here: verifying a manifest's tokenizer needs no numpy

        rows = [self.ids(t) for t in texts]
        return np.asarray(rows, dtype=np.int64).reshape(len(rows), self.sequence_length)

    def to_manifest(self) -> dict[str, Any]:
        return {
            "type": TOKENIZER_TYPE,
            "lowercase": self.lowercase,
            "pattern": self.pattern,
            "vocabulary": list(self.vocabulary),
            "oov_index": OOV_INDEX,
            "pad_index": PAD_INDEX,
            "padding": PADDING,
            "truncation": TRUNCATION,
            "sequence_length": self.sequence_length,
            "graph_input": self.graph_input,
        }

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> WordTokenizer:
        """The tokenizer a manifest entry describes, of the class its ``type`` names (``word``, or
        ``wordpiece``: a :class:`WordPieceTokenizer`)."""
        problems = tokenizer_problems(entry)
        if problems:
            raise ValueError("; ".join(problems))
        vocabulary, length = list(entry["vocabulary"]), int(entry["sequence_length"])
        graph_input, pattern, lowercase = str(entry["graph_input"]), str(entry["pattern"]), bool(entry["lowercase"])
        if entry["type"] == WORDPIECE_TYPE:
            strip = bool(entry["strip_accents"])
            return WordPieceTokenizer(vocabulary, length, graph_input, pattern, lowercase, strip)
        return WordTokenizer(vocabulary, length, graph_input, pattern, lowercase)


@dataclass(frozen=True)
class WordPieceTokenizer(WordTokenizer):
    """BERT's WordPiece: ``words`` (lowercased, accents stripped, punctuation split off) cut into the
    longest vocabulary pieces from the left (``##`` + piece inside a word; a word with a part no
    piece covers is one ``[UNK]``), then ``[CLS]``, at most ``sequence_length - 2`` pieces (the
    text's start), ``[SEP]``, and ``[PAD]`` to ``sequence_length``."""

    pattern: str = WORDPIECE_PATTERN
    strip_accents: bool = True

    def __post_init__(self) -> None:
        if tuple(self.vocabulary[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS or self.sequence_length < 3:
            raise ValueError(f"a wordpiece vocabulary starts with {SPECIAL_TOKENS} and holds 3+ ids per text")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.vocabulary)})
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def words(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        if self.strip_accents:  # "café" is "cafe", as in BERT's uncased vocabularies
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        return self._regex.findall(text)

    def pieces(self, word: str) -> list[str]:
        """Greedy longest-match-first, as BERT's WordpieceTokenizer."""
        if len(word) > MAX_WORD_CHARS:
            return [OOV_TOKEN]
        index, out, start = self._index, [], 0
        while start < len(word):
            for end in range(len(word), start, -1):
                piece = word[start:end] if start == 0 else CONTINUATION + word[start:end]
                if piece in index:
                    break
            else:
                return [OOV_TOKEN]
            out.append(piece)
            start = end
        return out

    def tokens(self, text: str) -> list[str]:
        return [p for w in self.words(text) for p in self.pieces(w)]

    def ids(self, text: str) -> list[int]:
        ids, room = [], self.sequence_length - 2
        for word in self.words(text):
            ids += [self._index[p] for p in self.pieces(word)]
            if len(ids) >= room:  # a long request stops here, not after tokenising all of it
                break
        ids = [CLS_INDEX, *ids[:room], SEP_INDEX]
        return ids + [PAD_INDEX] * (self.sequence_length - len(ids))

    def to_manifest(self) -> dict[str, Any]:
        return {
            **super().to_manifest(),
            "type": WORDPIECE_TYPE,
            "strip_accents": self.strip_accents,
            "continuation_prefix": CONTINUATION,
            "special_tokens": list(SPECIAL_TOKENS),
            "cls_index": CLS_INDEX,
            "sep_index": SEP_INDEX,
            "max_word_chars": MAX_WORD_CHARS,
            "padding": WORDPIECE_PADDING,
        }


def tokenizer_problems(entry: Any, where: str = "tokenizer") -> list[str]:
    """What is wrong with a manifest's tokenizer entry (its JSON, or a typed manifest's frozen copy:
    a read-only mapping whose lists are tuples), as sentences."""
    if not isinstance(entry, Mapping):
        return [f"{where}: expected an object"]
    problems = []
    kind = entry.get("type")
    if kind not in (TOKENIZER_TYPE, WORDPIECE_TYPE):
        problems.append(f"{where}.type: expected {TOKENIZER_TYPE!r} or {WORDPIECE_TYPE!r}, got {kind!r}")
    vocabulary = entry.get("vocabulary")
    if (
        not isinstance(vocabulary, list | tuple)
        or len(vocabulary) < 2
        or not all(isinstance(w, str) for w in vocabulary)
    ):
        problems.append(f"{where}.vocabulary: expected a list of at least 2 strings (padding, unknown, words...)")
    length = entry.get("sequence_length")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        problems.append(f"{where}.sequence_length: expected a positive integer, got {length!r}")
    if entry.get("pad_index") != PAD_INDEX or entry.get("oov_index") != OOV_INDEX:
        problems.append(f"{where}: expected pad_index {PAD_INDEX} and oov_index {OOV_INDEX}")
    padding = WORDPIECE_PADDING if kind == WORDPIECE_TYPE else PADDING
    if entry.get("padding", PADDING) != padding or entry.get("truncation", TRUNCATION) != TRUNCATION:
        problems.append(f"{where}: expected padding {padding!r} and truncation {TRUNCATION!r}")
    if not isinstance(entry.get("graph_input"), str) or not entry["graph_input"]:
        problems.append(f"{where}.graph_input: expected the ONNX input's name")
    if not isinstance(entry.get("lowercase"), bool):
        problems.append(f"{where}.lowercase: expected true or false")
    pattern = entry.get("pattern")
    try:
        if not isinstance(pattern, str):
            raise TypeError(pattern)
        re.compile(pattern)
    except (re.error, TypeError):
        problems.append(f"{where}.pattern: expected a regular expression")
    if kind == WORDPIECE_TYPE:
        problems += _wordpiece_problems(entry, where)
    return problems


def _wordpiece_problems(entry: Mapping[str, Any], where: str) -> list[str]:
    """The rules a ``wordpiece`` entry adds: the encoding this module implements, stated, so a
    manifest asking for another one is refused rather than served with different ids."""
    expected = {
        "continuation_prefix": CONTINUATION,
        "cls_index": CLS_INDEX,
        "sep_index": SEP_INDEX,
        "max_word_chars": MAX_WORD_CHARS,
    }
    problems = [
        f"{where}.{key}: expected {value!r}, got {entry.get(key)!r}"
        for key, value in expected.items()
        if entry.get(key) != value
    ]
    specials = entry.get("special_tokens")
    vocabulary = entry.get("vocabulary")
    if not isinstance(specials, list | tuple) or tuple(specials) != SPECIAL_TOKENS:
        problems.append(f"{where}.special_tokens: expected {list(SPECIAL_TOKENS)}, got {specials!r}")
    elif not isinstance(vocabulary, list | tuple) or tuple(vocabulary[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
        problems.append(f"{where}.vocabulary: expected to start with {list(SPECIAL_TOKENS)}")
    length = entry.get("sequence_length")
    if isinstance(length, int) and length < 3:
        problems.append(f"{where}.sequence_length: expected at least 3 ([CLS], a piece, [SEP]), got {length}")
    if not isinstance(entry.get("strip_accents"), bool):
        problems.append(f"{where}.strip_accents: expected true or false")
    return problems
