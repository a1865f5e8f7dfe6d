"""Learning a text family's tokenizer from the train channel's texts (``shared.text`` applies it, in
training and in serving alike): the most frequent words for ``word``, WordPiece merges for
``wordpiece``. Training only: nothing here ships to Lambda."""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable

from maas_core.shared.text import (
    CONTINUATION,
    MAX_WORD_CHARS,
    OOV_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    WORDPIECE_TYPE,
    WordPieceTokenizer,
    WordTokenizer,
)


def learn_tokenizer(
    kind: str, texts: Iterable[str], *, max_tokens: int, sequence_length: int, graph_input: str = "tokens"
) -> WordTokenizer | WordPieceTokenizer:
    """A ``kind`` tokenizer (``word`` or ``wordpiece``) of at most ``max_tokens`` vocabulary entries,
    learnt from ``texts``, cutting or padding every text to ``sequence_length`` ids for ``graph_input``."""
    if kind == WORDPIECE_TYPE:
        return _wordpieces(texts, max_tokens, WordPieceTokenizer(list(SPECIAL_TOKENS), sequence_length, graph_input))
    return _words(texts, max_tokens, WordTokenizer([PAD_TOKEN, OOV_TOKEN], sequence_length, graph_input))


def _words(texts: Iterable[str], max_tokens: int, probe: WordTokenizer, min_count: int = 1) -> WordTokenizer:
    """The ``max_tokens - 2`` most frequent words of ``texts`` (ties in first-seen order) after the
    padding and unknown entries."""
    sequence_length, graph_input = probe.sequence_length, probe.graph_input
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(probe.words(text))
    common = [w for w, n in counts.most_common(max(0, max_tokens - 2)) if n >= min_count]
    return WordTokenizer([PAD_TOKEN, OOV_TOKEN, *common], sequence_length, graph_input)


def _wordpieces(
    texts: Iterable[str], max_tokens: int, probe: WordPieceTokenizer, min_count: int = 2
) -> WordPieceTokenizer:
    """A WordPiece vocabulary of at most ``max_tokens`` entries learnt from ``texts``.

    The special tokens, every character seen (alone and as a ``##`` continuation), then the pieces
    of merges as in BPE: the most frequent adjacent pair of pieces (counted over distinct words,
    weighted by their counts; ties to the pair that sorts first) becomes one piece, until the
    vocabulary is full or no pair is seen ``min_count`` times. This is what Hugging Face's
    ``WordPieceTrainer`` does; it indexes which words hold which pair, so a merge touches only those.
    """
    sequence_length, graph_input = probe.sequence_length, probe.graph_input
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w in probe.words(text) if len(w) <= MAX_WORD_CHARS)
    words = [[w[0], *(CONTINUATION + c for c in w[1:])] for w in counts]
    weights = list(counts.values())
    vocabulary = dict.fromkeys([*SPECIAL_TOKENS, *(p for w in words for p in w)])
    pairs: Counter[tuple[str, str]] = Counter()
    where: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for i, word in enumerate(words):
        for pair in itertools.pairwise(word):
            pairs[pair] += weights[i]
            where[pair].add(i)
    # A max-heap of (count, pair) with stale entries skipped when popped: a merge costs the words it
    # touches, not a scan of every pair (30k merges over 300k lines: 5 s instead of 5 min).
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    while len(vocabulary) < max_tokens and heap:
        negative, best = heapq.heappop(heap)
        if -negative != pairs.get(best):
            continue
        if -negative < min_count:
            break
        merged = best[0] + best[1].removeprefix(CONTINUATION)
        vocabulary[merged] = None
        del pairs[best]
        changed: set[tuple[str, str]] = set()
        for i in sorted(where.pop(best)):
            old, new = words[i], _merge(words[i], best, merged)
            for pair in itertools.pairwise(old):
                if pair != best:
                    pairs[pair] -= weights[i]
                    changed.add(pair)
            for pair in itertools.pairwise(new):
                pairs[pair] += weights[i]
                where[pair].add(i)
                changed.add(pair)
            words[i] = new
        for pair in changed:
            if pairs[pair] > 0:
                heapq.heappush(heap, (-pairs[pair], pair))
    return WordPieceTokenizer(list(vocabulary)[:max_tokens], sequence_length, graph_input)


def _merge(word: list[str], pair: tuple[str, str], merged: str) -> list[str]:
    out, k = [], 0
    while k < len(word):
        if k + 1 < len(word) and (word[k], word[k + 1]) == pair:
            out.append(merged)
            k += 2
        else:
            out.append(word[k])
            k += 1
    return out
