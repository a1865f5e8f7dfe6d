"""A bundled, generated text set: short product reviews in three classes, written as a channel.

Nothing can be downloaded here, so reviews are composed from templates and word lists with a fixed
seed. Most carry plain lexical signal (a bag of words separates them); about one in ten of the
sentiment rows turns on "not" ("not good" is negative, "not bad" positive), and as many are contrasts
("sturdy, not flimsy" vs "flimsy, not sturdy") whose bag of words is the same in both classes: only
an order-aware model (text-rnn, transformer) can read those. ``negated_fraction=HARD_NEGATED_FRACTION``
makes most sentiment rows turn on order: a harder set, on which a bag of words falls short.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

LABELS = ["negative", "positive", "shipping"]
FILE = "reviews.csv"

PRODUCTS = ["blender", "kettle", "lamp", "jacket", "headset", "backpack", "charger", "mug", "drill", "chair", "toaster"]
OPENERS = ["", "honestly", "overall", "well", "so", "i think", "to be fair", "after a week"]
GOOD = ["great", "excellent", "good", "fantastic", "lovely", "solid", "superb", "reliable", "sturdy", "perfect"]
BAD = ["terrible", "awful", "poor", "flimsy", "useless", "disappointing", "broken", "cheap", "noisy", "horrible"]
POSITIVE = [
    "the {p} is {g}",
    "{g} {p} and {g} value",
    "i love this {g} {p}",
    "really {g} quality, would buy this {p} again",
    "my family finds the {p} {g}",
    "five stars, a {g} {p}",
]
NEGATIVE = [
    "the {p} is {b}",
    "{b} {p}, i want a refund",
    "i regret buying this {b} {p}",
    "really {b} quality, the {p} stopped working",
    "one star, a {b} {p}",
    "returned the {p}, it was {b}",
]
SHIPPING = [
    "my {p} arrived late",
    "the parcel with the {p} never came",
    "delivery took three weeks for the {p}",
    "the courier lost my {p}",
    "tracking says delivered but no {p}",
    "the {p} box was crushed in transit",
    "still waiting for the {p} to ship",
]
# The order-sensitive rows: the sentiment flipped by "not". In a contrast ("sturdy, not flimsy" vs
# "flimsy, not sturdy") both classes hold the same bag of words: only word order tells them apart.
NEGATED = ["the {p} is not {w}", "not {w} at all, this {p}", "this {p} is not {w}, honestly"]
CONTRAST = ["{a}, not {b}, this {p}", "the {p} is {a} and not {b}"]
NEGATED_FRACTION = 0.16
HARD_NEGATED_FRACTION = 0.6


def generate_reviews(
    rows: int = 3000, seed: int = 0, negated_fraction: float = NEGATED_FRACTION
) -> list[tuple[str, str]]:
    """``rows`` (text, label) pairs, balanced over the classes, shuffled with ``seed``; of the
    sentiment rows, ``negated_fraction`` turn on word order (``HARD_NEGATED_FRACTION``: a set where
    a bag of words falls short and an order-aware model is needed)."""
    rng = np.random.default_rng(seed)

    def pick(words: list[str]) -> str:
        return str(words[rng.integers(len(words))])

    out = []
    for i in range(rows):
        label = LABELS[i % len(LABELS)]
        p = pick(PRODUCTS)
        if label != "shipping" and rng.random() < negated_fraction:
            # "not <bad word>" is positive, "not <good word>" negative
            stated, denied = (GOOD, BAD) if label == "positive" else (BAD, GOOD)
            if rng.random() < 0.5:
                text = pick(CONTRAST).format(p=p, a=pick(stated), b=pick(denied))
            else:
                text = pick(NEGATED).format(p=p, w=pick(denied))
        elif label == "positive":
            text = pick(POSITIVE).format(p=p, g=pick(GOOD))
        elif label == "negative":
            text = pick(NEGATIVE).format(p=p, b=pick(BAD))
        else:
            text = pick(SHIPPING).format(p=p)
        opener = pick(OPENERS)
        text = f"{opener} {text}".strip()
        out.append((text.capitalize() + pick([".", "!", "", "..."]), label))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def write_text_channel(
    folder: str | Path, rows: int = 3000, seed: int = 0, fmt: str = "csv", negated_fraction: float = NEGATED_FRACTION
) -> Path:
    """Write the generated reviews as a channel: ``reviews.csv`` (``text,label``) or ``reviews.jsonl``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    reviews = generate_reviews(rows, seed, negated_fraction)
    if fmt == "csv":
        with (folder / FILE).open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(reviews)
    elif fmt == "jsonl":
        lines = (json.dumps({"text": t, "label": label}) + "\n" for t, label in reviews)
        (folder / "reviews.jsonl").write_text("".join(lines))
    else:
        raise ValueError(f"fmt must be csv or jsonl; got {fmt!r}")
    return folder
