"""The word tokenizer of the text models, used by training (to build the id sequences it trains on)
and by serving (to turn a client's raw string into the graph's token ids), so the two cannot differ.

TensorFlow's string ops do not export to plain ONNX, so the vocabulary lives in the manifest
(``inputs[i].tokenizer``) and the graph takes int64 ids ``[None, sequence_length]``. Pure Python and
numpy: it runs in the Lambda layer.
"""

from __future__ import annotations

import re
from collections import Counter
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
        problems = tokenizer_problems(entry)
        if problems:
            raise ValueError("; ".join(problems))
        return cls(
            vocabulary=list(entry["vocabulary"]),
            sequence_length=int(entry["sequence_length"]),
            graph_input=str(entry["graph_input"]),
            pattern=str(entry["pattern"]),
            lowercase=bool(entry["lowercase"]),
        )


def build_tokenizer(
    texts: Iterable[str],
    *,
    max_tokens: int,
    sequence_length: int,
    graph_input: str = "tokens",
    min_count: int = 1,
) -> WordTokenizer:
    """The ``max_tokens - 2`` most frequent words of ``texts`` (ties in first-seen order) after the
    padding and unknown entries."""
    probe = WordTokenizer([PAD_TOKEN, OOV_TOKEN], sequence_length, graph_input)
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(probe.words(text))
    common = [w for w, n in counts.most_common(max(0, max_tokens - 2)) if n >= min_count]
    return WordTokenizer([PAD_TOKEN, OOV_TOKEN, *common], sequence_length, graph_input)


def tokenizer_problems(entry: Any, where: str = "tokenizer") -> list[str]:
    """What is wrong with a manifest's tokenizer entry (its JSON, or a typed manifest's frozen copy:
    a read-only mapping whose lists are tuples), as sentences."""
    if not isinstance(entry, Mapping):
        return [f"{where}: expected an object"]
    problems = []
    if entry.get("type") != TOKENIZER_TYPE:
        problems.append(f"{where}.type: expected {TOKENIZER_TYPE!r}, got {entry.get('type')!r}")
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
    if entry.get("padding", PADDING) != PADDING or entry.get("truncation", TRUNCATION) != TRUNCATION:
        problems.append(f"{where}: expected padding {PADDING!r} and truncation {TRUNCATION!r}")
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
    return problems
